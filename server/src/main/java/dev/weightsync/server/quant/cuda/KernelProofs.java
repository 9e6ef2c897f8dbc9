package dev.weightsync.server.quant.cuda;

import static jcuda.driver.JCudaDriver.cuCtxSynchronize;
import static jcuda.driver.JCudaDriver.cuLaunchKernel;
import static jcuda.driver.JCudaDriver.cuMemFree;
import static jcuda.driver.JCudaDriver.cuMemcpyDtoH;
import static jcuda.driver.JCudaDriver.cuMemsetD8;
import static jcuda.driver.JCudaDriver.cuModuleGetFunction;
import static jcuda.driver.JCudaDriver.cuModuleUnload;

import jcuda.Pointer;
import jcuda.driver.CUdeviceptr;
import jcuda.driver.CUfunction;
import jcuda.driver.CUmodule;

/**
 * Runs {@code proofs.cu} on a quantizer's device: for every input the kernels can see, their
 * arithmetic (quotients without a division, the hardware's e4m3 conversion) gives the spec's
 * bytes (FP8 with and without power-of-two scales, INT4). The PTX is
 * the one built for the device's compute capability, as the kernels', so the proof covers the
 * code the driver compiled for this card.
 */
public final class KernelProofs {

  /** Finite BF16 magnitudes (bits 0..0x7F7F): one thread block each. */
  private static final int AMAX_VALUES = 0x7F80;
  private static final int THREADS = 256;

  /** One proof's counts over its input pairs. */
  public record Result(String name, long differ, long pairs) {}

  private final CudaContext cuda;

  public KernelProofs(CudaQuantizer q) {
    this.cuda = q.context();
  }

  /** The three proofs, in order: fp8-block, fp8-block-ue8m0, int4-group. */
  public Result[] run() {
    return cuda.call(() -> {
      CUmodule module = cuda.load("proofs");
      CUdeviceptr counts = CudaContext.alloc(2 * Long.BYTES);
      try {
        CUfunction fp8 = new CUfunction();
        CUfunction int4 = new CUfunction();
        cuModuleGetFunction(fp8, module, "prove_fp8");
        cuModuleGetFunction(int4, module, "prove_int4");
        return new Result[] {
            prove("fp8-block", fp8, counts, Pointer.to(Pointer.to(counts), Pointer.to(new int[] {0}))),
            prove("fp8-block-ue8m0", fp8, counts,
                Pointer.to(Pointer.to(counts), Pointer.to(new int[] {1}))),
            prove("int4-group", int4, counts, Pointer.to(Pointer.to(counts)))};
      } finally {
        cuMemFree(counts);
        cuModuleUnload(module);
      }
    });
  }

  private static Result prove(String name, CUfunction f, CUdeviceptr counts, Pointer params) {
    cuMemsetD8(counts, (byte) 0, 2 * Long.BYTES);
    cuLaunchKernel(f, AMAX_VALUES, 1, 1, THREADS, 1, 1, 0, null, params, null);
    cuCtxSynchronize();
    long[] c = new long[2];
    cuMemcpyDtoH(Pointer.to(c), counts, 2 * Long.BYTES);
    return new Result(name, c[0], c[1]);
  }
}
