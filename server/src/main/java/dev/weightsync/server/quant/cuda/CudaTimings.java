package dev.weightsync.server.quant.cuda;

import static jcuda.driver.JCudaDriver.cuCtxSynchronize;
import static jcuda.driver.JCudaDriver.cuMemcpyDtoD;
import static jcuda.driver.JCudaDriver.cuMemcpyHtoD;
import static jcuda.driver.JCudaDriver.cuMemcpyHtoDAsync;
import static jcuda.driver.JCudaDriver.cuStreamSynchronize;

import dev.weightsync.core.quant.Bf16;
import dev.weightsync.core.quant.TensorPlan;
import dev.weightsync.core.tensor.TensorSpec;
import dev.weightsync.server.quant.cuda.SlotPool.Slot;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.SplittableRandom;
import jcuda.Pointer;

/**
 * The baselines {@code bench gpu} measures the quantizer against, on a quantizer's own context and
 * first slot (nothing else may run on it meanwhile): a kernel alone, a device-to-device copy, the
 * host-to-device copies alone.
 */
public final class CudaTimings {

  private final CudaContext cuda;
  private final Slot slot;
  private final long bandBytes;
  private final Kernels kernels;

  public CudaTimings(CudaQuantizer q) {
    this.cuda = q.context();
    this.slot = q.slots().first();
    this.bandBytes = q.slots().bandBytes();
    this.kernels = new Kernels(cuda);
  }

  /**
   * Seconds per launch of {@code plan}'s kernel over a tensor already in device memory (random
   * BF16 values), averaged over {@code iterations} after one warm-up. The tensor must fit a band.
   */
  public double kernel(TensorPlan plan, int iterations) {
    Slot s = slot;
    return cuda.call(() -> {
      TensorSpec t = plan.input();
      int rows = Math.toIntExact(t.rows());
      int k = Math.toIntExact(t.cols());
      fillRandomBf16(t.byteLength());
      Runnable launch = plan instanceof TensorPlan.Fp8Block f
          ? () -> kernels.launchFp8(s, s.dIn, rows, k, f.ue8m0())
          : () -> kernels.launchInt4(s, s.dIn, rows, k, ((TensorPlan.Int4Group) plan).groupSize());
      launch.run();
      cuCtxSynchronize();
      long start = System.nanoTime();
      for (int i = 0; i < iterations; i++) {
        launch.run();
      }
      cuCtxSynchronize();
      return (System.nanoTime() - start) / 1e9 / iterations;
    });
  }

  /** Seconds per device-to-device copy of {@code bytes} (at most a band: the bandwidth baseline). */
  public double deviceCopy(long bytes, int iterations) {
    return cuda.call(() -> {
      cuMemcpyDtoD(slot.dOut, slot.dIn, bytes);
      cuCtxSynchronize();
      long start = System.nanoTime();
      for (int i = 0; i < iterations; i++) {
        cuMemcpyDtoD(slot.dOut, slot.dIn, bytes);
      }
      cuCtxSynchronize();
      return (System.nanoTime() - start) / 1e9 / iterations;
    });
  }

  /**
   * Seconds to copy {@code source} (pinned, see {@link CudaQuantizer#allocatePinned}) to the
   * device band by band, as the quantizer's copies in do, but with nothing else: the transfer
   * baseline.
   */
  public double hostToDevice(ByteBuffer source) {
    return cuda.call(() -> {
      long start = System.nanoTime();
      for (int off = 0; off < source.capacity(); off += (int) bandBytes) {
        int len = (int) Math.min(bandBytes, source.capacity() - off);
        cuMemcpyHtoDAsync(slot.dIn, Pointer.to(source.slice(off, len)), len, slot.stream);
      }
      cuStreamSynchronize(slot.stream);
      return (System.nanoTime() - start) / 1e9;
    });
  }

  /** Random BF16 weights (std 0.02, seed 3) in the slot's device input; owner thread. */
  private void fillRandomBf16(long bytes) {
    SplittableRandom r = new SplittableRandom(3);
    int chunk = (int) Math.min(bytes, slot.in.capacity());
    ByteBuffer b = slot.in.duplicate().clear().order(ByteOrder.LITTLE_ENDIAN);
    for (int i = 0; i < chunk / 2; i++) {
      b.putShort(Bf16.fromFloat((float) (r.nextGaussian() * 0.02)));
    }
    for (long off = 0; off < bytes; off += chunk) {
      cuMemcpyHtoD(slot.dIn.withByteOffset(off), slot.hIn, Math.min(chunk, bytes - off));
    }
  }
}
