package dev.weightsync.server.quant.cuda;

import static jcuda.driver.JCudaDriver.cuLaunchKernel;
import static jcuda.driver.JCudaDriver.cuModuleGetFunction;

import dev.weightsync.core.quant.QuantError;
import dev.weightsync.core.quant.TensorPlan;
import dev.weightsync.core.tensor.DType;
import dev.weightsync.core.tensor.TensorSpec;
import jcuda.Pointer;
import jcuda.driver.CUdeviceptr;
import jcuda.driver.CUfunction;

/**
 * The two kernels of {@code quantize.cu} (fp8_block, int4_group): which plans they take, how
 * they are launched over one band in a slot, and how their per-block statistics are summed. Launch
 * calls run on the owner thread.
 */
final class Kernels {

  static final int THREADS = 512;
  static final int BLOCK = 128;

  private final CUfunction fp8 = new CUfunction();
  private final CUfunction int4 = new CUfunction();

  Kernels(CudaContext cuda) {
    cuda.call(() -> {
      cuModuleGetFunction(fp8, cuda.module(), "fp8_block");
      cuModuleGetFunction(int4, cuda.module(), "int4_group");
      return null;
    });
  }

  /** Whether the kernels take this plan (else the CPU does, with the same bytes). */
  static boolean take(TensorPlan plan) {
    TensorSpec t = plan.input();
    if (t.dtype() != DType.BF16 || t.rank() != 2 || t.cols() % 8 != 0 || t.elementCount() == 0) {
      return false;
    }
    if (plan instanceof TensorPlan.Fp8Block) {
      return true;
    }
    if (plan instanceof TensorPlan.Int4Group g) {
      int seg = g.groupSize() / 8;
      return seg <= 32 && Integer.bitCount(seg) == 1;
    }
    return false;
  }

  /** Rows a band of this plan must be a multiple of: a 128-row block for FP8, a row for INT4. */
  static long rowsPerBand(TensorPlan plan) {
    return plan instanceof TensorPlan.Fp8Block ? BLOCK : 1;
  }

  /** Queues fp8_block over {@code rows} rows at {@code in}; returns its thread blocks. */
  long launchFp8(SlotPool.Slot s, CUdeviceptr in, int rows, int k, boolean ue8m0) {
    int gx = (k + BLOCK - 1) / BLOCK;
    int gy = (rows + BLOCK - 1) / BLOCK;
    Pointer params = Pointer.to(Pointer.to(in), Pointer.to(s.dOut), Pointer.to(s.dScales),
        Pointer.to(s.dPartials), Pointer.to(s.dFlag), Pointer.to(new int[] {rows}),
        Pointer.to(new int[] {k}), Pointer.to(new int[] {ue8m0 ? 1 : 0}));
    cuLaunchKernel(fp8, gx, gy, 1, THREADS, 1, 1, 0, s.stream, params, null);
    return (long) gx * gy;
  }

  /** Queues int4_group over {@code rows} rows at {@code in}; returns its thread blocks. */
  long launchInt4(SlotPool.Slot s, CUdeviceptr in, int rows, int k, int g) {
    long words = (long) rows * k / 8;
    int blocks = (int) ((words + THREADS - 1) / THREADS);
    Pointer params = Pointer.to(Pointer.to(in), Pointer.to(s.dOut), Pointer.to(s.dScales),
        Pointer.to(s.dPartials), Pointer.to(s.dFlag), Pointer.to(new long[] {words}),
        Pointer.to(new int[] {k}), Pointer.to(new int[] {g}));
    cuLaunchKernel(int4, blocks, 1, 1, THREADS, 1, 1, 0, s.stream, params, null);
    return blocks;
  }

  /** Adds the per-block statistics in block order, so the sums do not depend on scheduling. */
  static QuantError partials(SlotPool.Slot s, long blocks, long elements, long capacity) {
    if (blocks > capacity) {
      throw new IllegalStateException("statistics buffer too small: " + blocks + " blocks");
    }
    double max = 0;
    double err = 0;
    double ref = 0;
    for (int b = 0; b < blocks; b++) {
      max = Math.max(max, s.partials.getDouble(24 * b));
      err += s.partials.getDouble(24 * b + 8);
      ref += s.partials.getDouble(24 * b + 16);
    }
    return new QuantError(max, err, ref, elements);
  }
}
