package dev.weightsync.cli;

import dev.weightsync.cli.engine.StandInEngine;
import dev.weightsync.client.Tensor;
import dev.weightsync.client.WeightSyncClient;
import dev.weightsync.client.WireLimits;
import dev.weightsync.core.quant.Bf16;
import dev.weightsync.core.tensor.DType;
import dev.weightsync.core.tensor.TensorSpec;
import dev.weightsync.server.Sidecar;
import dev.weightsync.server.config.ConfigLoader;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.Callable;
import java.util.concurrent.CompletableFuture;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code weightsync bench ingest}: on one machine, in one run, the same BF16 bytes moved (a) over
 * raw TCP between two Java sockets on loopback, as many connections as streams, (b) through
 * {@code UpdateWeights} into a sidecar with {@code --format bf16} and no engine: the whole ingest
 * path (zero-copy parse, CRC32C, NaN scan, the staged shard on /dev/shm) and no quantization, and
 * (c) through a full update (ingest, quantize to fp8-block, stage, a stand-in engine), for each
 * stream count of {@code --streams}. Every case runs {@code --rounds} times, interleaved, and the
 * best round is reported beside the first: a sidecar is a long-running process, and on two cores
 * the JIT needs a few gigabytes before the gRPC path reaches its steady speed. Client and sidecar
 * share this JVM: the CPU column is both together (tools/bench/push_vs_iperf.py measures them as
 * separate processes).
 */
@Command(name = "ingest", mixinStandardHelpOptions = true,
    description = "Ingest throughput: raw TCP vs UpdateWeights ingest-only vs a full update.")
final class BenchIngestCommand implements Callable<Integer> {

  @Option(names = "--bytes", defaultValue = "1GiB", converter = ByteSizeConverter.class,
      description = "BF16 bytes per run (default ${DEFAULT-VALUE}).")
  long bytes;

  @Option(names = "--streams", defaultValue = "1,4,8", split = ",", description = "Stream counts, each a case of its own (default ${DEFAULT-VALUE}).")
  int[] streams;

  @Option(names = "--rounds", defaultValue = "3", description = "Times each case runs; the best is reported (default ${DEFAULT-VALUE}).")
  int rounds;

  @Option(names = "--device", defaultValue = "cpu", description = "The full update's quantizer: cpu or cuda[:N] (default ${DEFAULT-VALUE}).")
  String device;

  @Option(names = "--staging-dir", description = "Staging for the full update (default: a temporary folder under /dev/shm when it exists).")
  Path stagingDir;

  private static final int CHUNK = WireLimits.MAX_CHUNK_BYTES;

  @Override
  public Integer call() throws Exception {
    if (rounds < 1 || java.util.Arrays.stream(streams).anyMatch(n -> n < 1)) {
      throw new IllegalArgumentException("--rounds and --streams must be at least 1");
    }
    int most = java.util.Arrays.stream(streams).max().orElse(1);
    TensorSpec shape = TensorSpec.of("w", DType.BF16, 4096, 4096); // 32 MiB a tensor
    int count = (int) Math.max(most, bytes / shape.byteLength() / most * most);
    long total = count * shape.byteLength();
    ByteBuffer data = randomBf16(shape.byteLength());
    List<Tensor> tensors = new ArrayList<>();
    for (int i = 0; i < count; i++) {
      tensors.add(Tensor.of(TensorSpec.of("model.layers." + i + ".mlp.up_proj.weight", DType.BF16,
          4096, 4096), data.duplicate()));
    }
    System.out.printf(Locale.ROOT, "%d tensors of 4096 x 4096 BF16 = %.2f GB per run, %d cores%n",
        count, total / 1e9, Runtime.getRuntime().availableProcessors());
    int cases = streams.length;
    double[][] best = new double[3][cases];
    double[][] cold = new double[3][cases];
    double[][] cpu = new double[3][cases]; // CPU-seconds per GB in the best round
    for (int round = 0; round < rounds; round++) {
      for (int s = 0; s < cases; s++) {
        int n = streams[s];
        String run = "r" + round;
        for (int c = 0; c < 3; c++) {
          long cpu0 = processCpuNanos();
          double seconds = c == 0 ? tcp(total, n) : c == 1 ? update(tensors, n, run, "bf16", false)
              : update(tensors, n, run, "fp8-block", true);
          double perGb = (processCpuNanos() - cpu0) / 1e9 / (total / 1e9);
          double g = total / seconds / 1e9;
          if (g > best[c][s]) {
            best[c][s] = g;
            cpu[c][s] = perGb;
          }
          cold[c][s] = round == 0 ? g : cold[c][s];
        }
      }
      System.out.printf(Locale.ROOT, "round %d of %d done%n", round + 1, rounds);
    }
    String[] names = {"(a) raw TCP, loopback", "(b) ingest only (bf16, staged)",
        "(c) full update (fp8-block, " + device + ")"};
    System.out.printf(Locale.ROOT, "best of %d rounds; GB/s, and CPU-seconds per GB of this JVM"
        + " (client and sidecar together); first round (cold JIT) in brackets%n", rounds);
    StringBuilder head = new StringBuilder(String.format(Locale.ROOT, "%-34s", ""));
    for (int n : streams) {
      head.append(String.format(Locale.ROOT, " %24s", n + (n == 1 ? " stream" : " streams")));
    }
    System.out.println(head);
    for (int c = 0; c < 3; c++) {
      StringBuilder line = new StringBuilder(String.format(Locale.ROOT, "%-34s", names[c]));
      for (int s = 0; s < cases; s++) {
        line.append(String.format(Locale.ROOT, " %6.2f GB/s %4.2f s/GB (%4.2f)", best[c][s],
            cpu[c][s], cold[c][s]));
      }
      System.out.println(line);
    }
    for (int s = 0; s < cases; s++) {
      System.out.printf(Locale.ROOT, "%d stream(s): (b)/(a) = %.0f%%, (c)/(b) = %.0f%%%n",
          streams[s], 100 * best[1][s] / best[0][s], 100 * best[2][s] / best[1][s]);
    }
    return 0;
  }

  private static long processCpuNanos() {
    return ((com.sun.management.OperatingSystemMXBean)
        java.lang.management.ManagementFactory.getOperatingSystemMXBean()).getProcessCpuTime();
  }

  /** Seconds to move {@code total} bytes over {@code n} loopback TCP connections. */
  private static double tcp(long total, int n) throws Exception {
    try (ServerSocketChannel server = ServerSocketChannel.open()) {
      server.bind(new InetSocketAddress("127.0.0.1", 0));
      int port = ((InetSocketAddress) server.getLocalAddress()).getPort();
      List<CompletableFuture<Void>> readers = new ArrayList<>();
      List<CompletableFuture<Void>> writers = new ArrayList<>();
      long start = System.nanoTime();
      for (int i = 0; i < n; i++) {
        long share = total / n;
        writers.add(CompletableFuture.runAsync(() -> {
          try (SocketChannel out = SocketChannel.open(new InetSocketAddress("127.0.0.1", port))) {
            ByteBuffer b = ByteBuffer.allocateDirect(CHUNK);
            for (long sent = 0; sent < share; ) {
              b.clear().limit((int) Math.min(CHUNK, share - sent));
              sent += out.write(b);
            }
          } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
          }
        }));
        SocketChannel in = server.accept();
        readers.add(CompletableFuture.runAsync(() -> {
          try (in) {
            ByteBuffer b = ByteBuffer.allocateDirect(CHUNK);
            while (in.read(b.clear()) >= 0) {
              // discard
            }
          } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
          }
        }));
      }
      CompletableFuture.allOf(writers.toArray(CompletableFuture[]::new)).join();
      CompletableFuture.allOf(readers.toArray(CompletableFuture[]::new)).join();
      return (System.nanoTime() - start) / 1e9;
    }
  }

  /**
   * Seconds of one version into an in-process sidecar of {@code format}, staging on /dev/shm,
   * with a stand-in engine when {@code engine} (without one the version is staged and done).
   */
  private double update(List<Tensor> tensors, int n, String run, String format, boolean engine)
      throws Exception {
    Path root = stagingDir != null ? stagingDir
        : Files.isDirectory(Path.of("/dev/shm")) ? Files.createTempDirectory(Path.of("/dev/shm"), "ws-bench-")
        : Files.createTempDirectory("ws-bench-");
    try (StandInEngine stand = engine ? new StandInEngine(0, null).start() : null;
        Sidecar sidecar = new Sidecar(ConfigLoader.load(null, Map.of(), Map.of("port", 0,
            "metrics-port", -1, "format", format, "device", device, "keep-versions", 1,
            "staging-dir", root.resolve("staging").toString(),
            "sglang-url", stand == null ? List.of() : List.of(stand.url())))).start()) {
      return push("127.0.0.1:" + sidecar.port(), tensors, n, format + "-" + run);
    } finally {
      dev.weightsync.core.checkpoint.CheckpointConverter.deleteTree(root);
    }
  }

  /** Seconds to push {@code tensors} as one version over {@code n} parallel streams. */
  private static double push(String target, List<Tensor> tensors, int n, String version)
      throws Exception {
    try (WeightSyncClient client = WeightSyncClient.connect(target)) {
      long start = System.nanoTime();
      client.pushParallel(version + "-" + n, tensors, n);
      return (System.nanoTime() - start) / 1e9;
    }
  }

  private static ByteBuffer randomBf16(long length) {
    SplittableRandom r = new SplittableRandom(5);
    ByteBuffer b = ByteBuffer.allocateDirect(Math.toIntExact(length)).order(ByteOrder.LITTLE_ENDIAN);
    while (b.remaining() >= 2) {
      b.putShort(Bf16.fromFloat((float) (r.nextGaussian() * 0.02)));
    }
    return b.flip();
  }
}
