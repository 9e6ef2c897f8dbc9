package dev.weightsync.server.quant.cuda;

import static jcuda.driver.JCudaDriver.cuLaunchKernel;
import static jcuda.driver.JCudaDriver.cuModuleGetFunction;
import static jcuda.driver.JCudaDriver.cuOccupancyMaxActiveBlocksPerMultiprocessor;

import dev.weightsync.core.quant.QuantError;
import dev.weightsync.core.quant.TensorPlan;
import dev.weightsync.core.tensor.DType;
import dev.weightsync.core.tensor.TensorSpec;
import jcuda.Pointer;
import jcuda.driver.CUdeviceptr;
import jcuda.driver.CUfunction;

/**
 * The two kernels of {@code quantize.cu} (fp8_block, int4_group): which plans they take, how
 * they are launched over one band in a slot, and how their per-block statistics are summed. Each
 * launch has at most as many thread blocks as the device runs at once (the driver's occupancy
 * for the kernel, times the multiprocessors); the kernels walk the rest of the band with a stride
 * of the grid. Launch calls run on the owner thread.
 */
final class Kernels {

  static final int THREADS = 512;
  static final int BLOCK = 128;
  /** Packed words one int4_group thread block takes at a time (INT4_PAIRS = 1 pair a thread). */
  private static final int WORDS_PER_BLOCK = THREADS * 2;

  private final CUfunction fp8 = new CUfunction();
  private final CUfunction int4 = new CUfunction();
  private final int fp8Blocks;
  private final int int4Blocks;

  Kernels(CudaContext cuda) {
    int[] resident = cuda.call(() -> {
      cuModuleGetFunction(fp8, cuda.module(), "fp8_block");
      cuModuleGetFunction(int4, cuda.module(), "int4_group");
      return new int[] {resident(fp8, cuda), resident(int4, cuda)};
    });
    this.fp8Blocks = resident[0];
    this.int4Blocks = resident[1];
  }

  /** Thread blocks of {@code f} the whole device runs at once. */
  private static int resident(CUfunction f, CudaContext cuda) {
    int[] perSm = new int[1];
    cuOccupancyMaxActiveBlocksPerMultiprocessor(perSm, f, THREADS, 0);
    return Math.max(1, perSm[0]) * Math.max(1, cuda.multiprocessors());
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
    if (plan instanceof TensorPlan.Int4Group g) { // G/8 words a group: 2 to 32, a power of two
      int seg = g.groupSize() / 8;
      return seg >= 2 && seg <= 32 && Integer.bitCount(seg) == 1 && t.cols() % g.groupSize() == 0;
    }
    return false;
  }

  /** Rows a band of this plan must be a multiple of: a 128-row block for FP8, a row for INT4. */
  static long rowsPerBand(TensorPlan plan) {
    return plan instanceof TensorPlan.Fp8Block ? BLOCK : 1;
  }

  /** The 128x128 tiles of {@code rows} rows of {@code k} columns: one scale each. */
  static long fp8Tiles(int rows, int k) {
    return (long) ((k + BLOCK - 1) / BLOCK) * ((rows + BLOCK - 1) / BLOCK);
  }

  /** Queues fp8_block over {@code rows} rows at {@code in}; returns its thread blocks. */
  long launchFp8(SlotPool.Slot s, CUdeviceptr in, int rows, int k, boolean ue8m0) {
    int blocks = (int) Math.min(fp8Tiles(rows, k), fp8Blocks);
    Pointer params = Pointer.to(Pointer.to(in), Pointer.to(s.dOut), Pointer.to(s.dScales),
        Pointer.to(s.dPartials), Pointer.to(s.dFlag), Pointer.to(new int[] {rows}),
        Pointer.to(new int[] {k}), Pointer.to(new int[] {ue8m0 ? 1 : 0}));
    cuLaunchKernel(fp8, blocks, 1, 1, THREADS, 1, 1, 0, s.stream, params, null);
    return blocks;
  }

  /** Queues int4_group over {@code rows} rows at {@code in}; returns its thread blocks. */
  long launchInt4(SlotPool.Slot s, CUdeviceptr in, int rows, int k, int g) {
    long words = (long) rows * k / 8;
    int blocks = (int) Math.min((words + WORDS_PER_BLOCK - 1) / WORDS_PER_BLOCK, int4Blocks);
    Pointer params = Pointer.to(Pointer.to(in), Pointer.to(s.dOut), Pointer.to(s.dScales),
        Pointer.to(s.dPartials), Pointer.to(s.dFlag), Pointer.to(new long[] {words}),
        Pointer.to(new int[] {k}), Pointer.to(new int[] {g}));
    cuLaunchKernel(int4, blocks, 1, 1, THREADS, 1, 1, 0, s.stream, params, null);
    return blocks;
  }

  /**
   * Adds the per-block statistics in block order, so the sums do not depend on scheduling (they
   * can depend on the device, whose size sets which tiles a block takes; the bytes do not).
   */
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
