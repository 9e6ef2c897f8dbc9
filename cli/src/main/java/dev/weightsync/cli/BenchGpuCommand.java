package dev.weightsync.cli;

import dev.weightsync.core.quant.Bf16;
import dev.weightsync.core.quant.CpuQuantizer;
import dev.weightsync.core.quant.QuantError;
import dev.weightsync.core.quant.TensorPlan;
import dev.weightsync.core.tensor.DType;
import dev.weightsync.core.tensor.TensorSource;
import dev.weightsync.core.tensor.TensorSpec;
import dev.weightsync.server.quant.CudaQuantizer;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code weightsync bench gpu}: on a CUDA machine, (1) the GPU path's bytes against the CPU
 * oracle for many shapes, and (2) each kernel's effective bandwidth (BF16 read + bytes written)
 * as a fraction of the same card's device-to-device copy bandwidth, measured in the same run.
 */
@Command(name = "gpu", mixinStandardHelpOptions = true,
    description = "GPU kernels: bytes equal to the CPU path, and bandwidth vs device-to-device copy.")
final class BenchGpuCommand implements Callable<Integer> {

  @Option(names = "--device", defaultValue = "0", description = "CUDA device ordinal (default ${DEFAULT-VALUE}).")
  int device;

  @Option(names = "--iterations", defaultValue = "20", description = "Timed launches per kernel (default ${DEFAULT-VALUE}).")
  int iterations;

  @Option(names = "--skip-exactness", description = "Only measure bandwidth.")
  boolean skipExactness;

  @Override
  public Integer call() throws Exception {
    int cores = Runtime.getRuntime().availableProcessors();
    int failures = 0;
    try (CudaQuantizer gpu = new CudaQuantizer(device, 1L << 30, cores);
        CpuQuantizer cpu = new CpuQuantizer(cores)) {
      System.out.println("device cuda:" + device + " = " + gpu.deviceName());
      if (!skipExactness) {
        long[][] shapes = {{1, 4096}, {7, 1000}, {129, 264}, {300, 1024}, {4096, 4096},
            {8192, 28672}, {152064, 4096}};
        for (long[] shape : shapes) {
          TensorSpec t = TensorSpec.of("model.layers.0.mlp.experts.0.up_proj.weight", DType.BF16, shape);
          ByteBuffer in = random(t.elementCount(), shape[0] * 31 + shape[1]);
          for (TensorPlan p : plans(t)) {
            MemoryTensors a = new MemoryTensors(p.outputs());
            MemoryTensors b = new MemoryTensors(p.outputs());
            long t0 = System.nanoTime();
            QuantError eg = gpu.quantize(p, TensorSource.of(in), a);
            double gs = (System.nanoTime() - t0) / 1e9;
            QuantError ec = cpu.quantize(p, TensorSource.of(in), b);
            List<String> differ = a.differences(b);
            failures += differ.isEmpty() ? 0 : 1;
            System.out.printf(Locale.ROOT, "exact %-16s %6d x %-6d %s (gpu %.3f s incl. copies;"
                    + " max abs err gpu %.4g cpu %.4g, rel rms gpu %.6g cpu %.6g)%n",
                label(p), shape[0], shape[1], differ.isEmpty() ? "IDENTICAL" : "DIFFERS " + differ,
                gs, eg.maxAbs(), ec.maxAbs(), eg.relRms(), ec.relRms());
          }
        }
      }
      long copyBytes = 512L << 20;
      double copy = gpu.timeDeviceCopy(copyBytes, iterations);
      double copyBw = 2.0 * copyBytes / copy / 1e9;
      System.out.printf(Locale.ROOT, "device-to-device copy: %.0f GB/s (bytes read + written)%n", copyBw);
      for (long[] shape : new long[][] {{4096, 4096}, {16384, 8192}, {8192, 28672}}) {
        TensorSpec t = TensorSpec.of("w.weight", DType.BF16, shape);
        for (TensorPlan p : plans(t)) {
          double s = gpu.timeKernel(p, iterations);
          long out = p.outputs().stream().mapToLong(TensorSpec::byteLength).sum();
          double bw = (t.byteLength() + out) / s / 1e9;
          System.out.printf(Locale.ROOT, "kernel %-16s %6d x %-6d %8.1f us  %7.0f GB/s  %5.1f%% of copy%n",
              label(p), shape[0], shape[1], s * 1e6, bw, 100 * bw / copyBw);
        }
      }
    }
    System.out.println(failures == 0 ? "all GPU outputs identical to the CPU path" : failures + " case(s) differ");
    return failures == 0 ? 0 : 1;
  }

  private static List<TensorPlan> plans(TensorSpec t) {
    List<TensorPlan> plans = new ArrayList<>();
    plans.add(new TensorPlan.Fp8Block(t, false));
    plans.add(new TensorPlan.Fp8Block(t, true));
    for (int g : new int[] {128, 32}) {
      if (t.cols() % g == 0) {
        plans.add(new TensorPlan.Int4Group(t, g));
      }
    }
    return plans;
  }

  private static String label(TensorPlan p) {
    if (p instanceof TensorPlan.Fp8Block f) {
      return f.ue8m0() ? "fp8-block-ue8m0" : "fp8-block";
    }
    return "int4-group g" + ((TensorPlan.Int4Group) p).groupSize();
  }

  private static ByteBuffer random(long elements, long seed) {
    SplittableRandom r = new SplittableRandom(seed);
    ByteBuffer b = ByteBuffer.allocateDirect(Math.toIntExact(elements * 2)).order(ByteOrder.LITTLE_ENDIAN);
    for (long i = 0; i < elements; i++) {
      double scale = Math.pow(10, r.nextInt(7) - 5);
      b.putShort(Bf16.fromFloat((float) (r.nextGaussian() * scale)));
    }
    return b.flip();
  }
}
