package dev.weightsync.cli;

import dev.weightsync.core.quant.Bf16;
import dev.weightsync.core.quant.CpuQuantizer;
import dev.weightsync.core.quant.Quantizer;
import dev.weightsync.core.quant.TensorPlan;
import dev.weightsync.core.tensor.DType;
import dev.weightsync.core.tensor.TensorSink;
import dev.weightsync.core.tensor.TensorSource;
import dev.weightsync.core.tensor.TensorSpec;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code weightsync bench quantize}: CPU quantization throughput per format, on one thread and on
 * all, beside a plain copy of the same bytes measured in the same run.
 */
@Command(name = "quantize", mixinStandardHelpOptions = true,
    description = "CPU quantization throughput (GB/s of BF16 input) per format vs a plain copy.")
final class BenchQuantizeCommand implements Callable<Integer> {

  @Option(names = "--rows", defaultValue = "4096", description = "Rows of the test tensor (default ${DEFAULT-VALUE}).")
  int rows;

  @Option(names = "--cols", defaultValue = "8192", description = "Columns of the test tensor (default ${DEFAULT-VALUE}).")
  int cols;

  @Option(names = "--iterations", defaultValue = "5", description = "Timed runs per case; the median is reported (default ${DEFAULT-VALUE}).")
  int iterations;

  @Option(names = "--threads", description = "The 'all threads' count (default: all cores).")
  Integer threads;

  /** Copies outputs into preallocated direct buffers, as writing into a staged file would. */
  private static final class BufferSink implements TensorSink {
    private final Map<String, ByteBuffer> buffers = new HashMap<>();

    BufferSink(List<TensorSpec> outputs) {
      for (TensorSpec t : outputs) {
        buffers.put(t.name(), ByteBuffer.allocateDirect(Math.toIntExact(t.byteLength())));
      }
    }

    @Override
    public void write(String name, long offset, ByteBuffer data) {
      buffers.get(name).duplicate().position((int) offset).put(data.duplicate());
    }
  }

  @Override
  public Integer call() throws Exception {
    int all = threads != null ? threads : Runtime.getRuntime().availableProcessors();
    TensorSpec spec = TensorSpec.of("model.layers.0.mlp.experts.0.up_proj.weight", DType.BF16, rows, cols);
    ByteBuffer input = randomBf16(spec.elementCount());
    long bytes = spec.byteLength();
    System.out.printf("tensor %d x %d BF16 (%s), %d iteration(s) per case, median reported, %d core(s)%n",
        rows, cols, ByteSizeConverter.format(bytes), iterations, Runtime.getRuntime().availableProcessors());

    ByteBuffer copyTarget = ByteBuffer.allocateDirect((int) bytes);
    double copy = median(() -> copyTarget.clear().put(input.duplicate()));
    System.out.printf("%-22s %7s %12s %14s %9s%n", "case", "threads", "GB/s (BF16)", "GB/s per core", "vs copy");
    System.out.printf("%-22s %7d %12.2f %14.2f %9s%n", "copy (baseline)", 1, bytes / copy / 1e9, bytes / copy / 1e9, "1.00");

    List<Object[]> cases = new ArrayList<>();
    cases.add(new Object[] {"fp8-block", new TensorPlan.Fp8Block(spec, false)});
    cases.add(new Object[] {"fp8-block-ue8m0", new TensorPlan.Fp8Block(spec, true)});
    if (cols % 128 == 0) {
      cases.add(new Object[] {"int4-group g128", new TensorPlan.Int4Group(spec, 128)});
    }
    if (cols % 32 == 0) {
      cases.add(new Object[] {"int4-group g32", new TensorPlan.Int4Group(spec, 32)});
    }
    for (Object[] c : cases) {
      TensorPlan plan = (TensorPlan) c[1];
      BufferSink sink = new BufferSink(plan.outputs());
      for (int t : all == 1 ? new int[] {1} : new int[] {1, all}) {
        try (Quantizer q = new CpuQuantizer(t)) {
          double s = median(() -> q.quantize(plan, TensorSource.of(input), sink));
          double gbs = bytes / s / 1e9;
          System.out.printf("%-22s %7d %12.2f %14.2f %9.2f%n", c[0], t, gbs, gbs / t, copy / s);
        }
      }
    }
    return 0;
  }

  private interface Work {
    void run() throws Exception;
  }

  /** Two warm-up runs, then the median of the timed runs, in seconds. */
  private double median(Work w) throws Exception {
    w.run();
    w.run();
    double[] t = new double[iterations];
    for (int i = 0; i < iterations; i++) {
      long start = System.nanoTime();
      w.run();
      t[i] = (System.nanoTime() - start) / 1e9;
    }
    Arrays.sort(t);
    return t[iterations / 2];
  }

  private static ByteBuffer randomBf16(long elements) {
    SplittableRandom r = new SplittableRandom(1);
    ByteBuffer b = ByteBuffer.allocateDirect(Math.toIntExact(elements * 2)).order(ByteOrder.LITTLE_ENDIAN);
    for (long i = 0; i < elements; i++) {
      b.putShort(Bf16.fromFloat((float) (r.nextDouble(-1, 1) * 0.05)));
    }
    return b.flip();
  }
}
