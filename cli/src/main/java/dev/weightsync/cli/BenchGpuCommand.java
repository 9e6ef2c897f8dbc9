package dev.weightsync.cli;

import dev.weightsync.core.quant.Bf16;
import dev.weightsync.core.quant.CpuQuantizer;
import dev.weightsync.core.quant.QuantError;
import dev.weightsync.core.quant.QuantQueue;
import dev.weightsync.core.quant.TensorPlan;
import dev.weightsync.core.tensor.DType;
import dev.weightsync.core.tensor.TensorSink;
import dev.weightsync.core.tensor.TensorSource;
import dev.weightsync.core.tensor.TensorSpec;
import dev.weightsync.server.quant.cuda.CudaQuantizer;
import dev.weightsync.server.quant.cuda.CudaTimings;
import dev.weightsync.server.quant.cuda.KernelProofs;
import dev.weightsync.server.quant.Quantizers;
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
 * {@code weightsync bench gpu}: on a CUDA machine, (0) the exhaustive proofs that the kernels'
 * arithmetic (division-free quotients, the hardware's e4m3) gives the spec's bytes, (1) the GPU path's bytes against the CPU oracle for many
 * shapes, and (2) each kernel's effective bandwidth (BF16 read + bytes written)
 * as a fraction of the same card's device-to-device copy bandwidth, measured in the same run, and
 * (3) a stream of tensors quantized host to host against the host-to-device copy alone.
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

  @Option(names = "--stream-bytes", defaultValue = "2GiB", converter = ByteSizeConverter.class,
      description = "BF16 bytes of the end-to-end stream (default ${DEFAULT-VALUE}).")
  long streamBytes;

  @Override
  public Integer call() throws Exception {
    int cores = Runtime.getRuntime().availableProcessors();
    int failures = 0;
    // The sidecar's configuration (64 MiB bands, 4 slots) and a tiny one (1 MiB bands) that puts
    // many band boundaries inside even small tensors. Kernel timings need whole tensors on the
    // card: a 512 MiB band.
    try (CudaQuantizer gpu = new CudaQuantizer(device, Quantizers.GPU_BAND_BYTES, Quantizers.GPU_SLOTS, cores);
        CudaQuantizer tiny = new CudaQuantizer(device, 1L << 20, 2, cores);
        CpuQuantizer cpu = new CpuQuantizer(cores)) {
      System.out.println("device cuda:" + device + " = " + gpu.deviceName() + ", kernels "
          + gpu.ptxArch());
      if (!skipExactness) {
        for (KernelProofs.Result r : new KernelProofs(gpu).run()) {
          failures += r.differ() == 0 ? 0 : 1;
          System.out.printf(Locale.ROOT, "proof %-16s %,d (amax, x) pairs: %s%n", r.name(),
              r.pairs(), r.differ() == 0 ? "kernel = spec in every one" : r.differ() + " DIFFER");
        }
        // 130 x 128 and 3 x 256: INT4 bands whose pairs of words are not a multiple of a warp
        long[][] shapes = {{1, 4096}, {7, 1000}, {129, 264}, {130, 128}, {3, 256}, {300, 1024},
            {4096, 4096}, {8192, 28672}, {152064, 4096}};
        for (long[] shape : shapes) {
          TensorSpec t = TensorSpec.of("model.layers.0.mlp.experts.0.up_proj.weight", DType.BF16, shape);
          ByteBuffer in = random(t.elementCount(), shape[0] * 31 + shape[1]);
          for (TensorPlan p : plans(t)) {
            MemoryTensors want = new MemoryTensors(p.outputs());
            QuantError ec = cpu.quantize(p, TensorSource.of(in), want);
            for (CudaQuantizer q : new CudaQuantizer[] {gpu, tiny}) {
              if (q == tiny && t.byteLength() > (64L << 20)) {
                continue; // thousands of 1 MiB bands: slow, and covered by the shapes above
              }
              MemoryTensors got = new MemoryTensors(p.outputs());
              long t0 = System.nanoTime();
              QuantError eg = q.quantize(p, TensorSource.of(in), got);
              double gs = (System.nanoTime() - t0) / 1e9;
              List<String> differ = got.differences(want);
              failures += differ.isEmpty() ? 0 : 1;
              System.out.printf(Locale.ROOT, "exact %-16s %6d x %-6d bands %-5s %s (gpu %.3f s incl."
                      + " copies; max abs err gpu %.4g cpu %.4g, rel rms gpu %.6g cpu %.6g)%n",
                  label(p), shape[0], shape[1], q == gpu ? "64M" : "1M",
                  differ.isEmpty() ? "IDENTICAL" : "DIFFERS " + differ, gs, eg.maxAbs(),
                  ec.maxAbs(), eg.relRms(), ec.relRms());
            }
          }
        }
      }
    }
    try (CudaQuantizer gpu = new CudaQuantizer(device, 512L << 20, 1, cores)) {
      CudaTimings timings = new CudaTimings(gpu);
      long copyBytes = 256L << 20;
      double copy = timings.deviceCopy(copyBytes, iterations);
      double copyBw = 2.0 * copyBytes / copy / 1e9;
      System.out.printf(Locale.ROOT, "device-to-device copy: %.0f GB/s (bytes read + written)%n", copyBw);
      for (long[] shape : new long[][] {{4096, 4096}, {16384, 8192}, {8192, 28672}}) {
        TensorSpec t = TensorSpec.of("w.weight", DType.BF16, shape);
        for (TensorPlan p : plans(t)) {
          double s = timings.kernel(p, iterations);
          long out = p.outputs().stream().mapToLong(TensorSpec::byteLength).sum();
          double bw = (t.byteLength() + out) / s / 1e9;
          System.out.printf(Locale.ROOT, "kernel %-16s %6d x %-6d %8.1f us  %7.0f GB/s  %5.1f%% of copy%n",
              label(p), shape[0], shape[1], s * 1e6, bw, 100 * bw / copyBw);
        }
      }
    }
    endToEnd(cores);
    if (skipExactness) {
      System.out.println("exactness not checked (--skip-exactness)");
    } else {
      System.out.println(failures == 0 ? "all GPU outputs identical to the CPU path"
          : failures + " case(s) differ");
    }
    return failures == 0 ? 0 : 1;
  }

  /**
   * A stream of 8192 x 8192 BF16 tensors quantized from host memory to host memory, against the
   * host-to-device copy of the same bytes alone (the transfer that bounds it), in one run: with the
   * sidecar's 4 slots and with 3 (copies in, kernels and copies out overlap) and 1 slot (nothing
   * overlaps), from pinned memory and from ordinary (pageable) direct memory.
   */
  private void endToEnd(int cores) throws Exception {
    int count = (int) Math.max(1, streamBytes / (128L << 20));
    TensorSpec spec = TensorSpec.of("w.weight", DType.BF16, 8192, 8192);
    ByteBuffer pattern = random(spec.elementCount(), 11);
    try (CudaQuantizer three = new CudaQuantizer(device, Quantizers.GPU_BAND_BYTES, 3, cores);
        CudaQuantizer one = new CudaQuantizer(device, Quantizers.GPU_BAND_BYTES, 1, cores);
        CudaQuantizer four = new CudaQuantizer(device, Quantizers.GPU_BAND_BYTES, Quantizers.GPU_SLOTS, cores)) {
      List<ByteBuffer> pinned = new ArrayList<>();
      List<ByteBuffer> pageable = new ArrayList<>();
      for (int i = 0; i < count; i++) {
        pinned.add(three.allocatePinned(spec.byteLength()).put(pattern.duplicate()).flip());
        pageable.add(ByteBuffer.allocateDirect((int) spec.byteLength()).put(pattern.duplicate()).flip());
      }
      CudaTimings copies = new CudaTimings(three);
      double gb = count * spec.byteLength() / 1e9;
      System.out.printf(Locale.ROOT, "end to end: %d tensors of 8192 x 8192 BF16 = %.2f GB%n", count, gb);
      for (int round = 0; round < 2; round++) { // the first round warms up; the second is reported
        double h2d = 0;
        for (ByteBuffer b : pinned) {
          h2d += copies.hostToDevice(b);
        }
        String[] labels = {"fp8-block, 3 slots, pinned", "fp8-block, 1 slot, pinned",
            "fp8-block, 4 slots, pinned",
            "fp8-block, 4 slots, pageable", "int4-group g128, 4 slots, pinned"};
        double[] secs = {
            stream(three, new TensorPlan.Fp8Block(spec, false), pinned),
            stream(one, new TensorPlan.Fp8Block(spec, false), pinned),
            stream(four, new TensorPlan.Fp8Block(spec, false), pinned),
            stream(four, new TensorPlan.Fp8Block(spec, false), pageable),
            stream(four, new TensorPlan.Int4Group(spec, 128), pinned)};
        if (round == 1) {
          System.out.printf(Locale.ROOT, "  host-to-device copy alone (pinned): %.1f ms  %.1f GB/s%n",
              h2d * 1e3, gb / h2d);
          for (int i = 0; i < labels.length; i++) {
            System.out.printf(Locale.ROOT, "  %-34s %7.1f ms  %5.1f GB/s  %.2fx the copy alone%n",
                labels[i], secs[i] * 1e3, gb / secs[i], secs[i] / h2d);
          }
        }
      }
    }
  }

  /** Seconds to quantize every buffer (one tensor each), three in flight, outputs discarded. */
  private static double stream(CudaQuantizer q, TensorPlan plan, List<ByteBuffer> inputs)
      throws Exception {
    TensorSink discard = (name, offset, data) -> { };
    QuantQueue queue = new QuantQueue(q, 3, null);
    long t0 = System.nanoTime();
    for (ByteBuffer b : inputs) {
      queue.submit(plan, TensorSource.of(b), discard);
    }
    queue.finish();
    return (System.nanoTime() - t0) / 1e9;
  }

  private static List<TensorPlan> plans(TensorSpec t) {
    List<TensorPlan> plans = new ArrayList<>();
    plans.add(new TensorPlan.Fp8Block(t, false));
    plans.add(new TensorPlan.Fp8Block(t, true));
    for (int g : new int[] {128, 32, 16, 256}) { // the engines take 32 to 128; G = 16 and 256 span 1 and 16 threads
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
