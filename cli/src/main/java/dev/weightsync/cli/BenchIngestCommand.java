package dev.weightsync.cli;

import dev.weightsync.cli.engine.StandInEngine;
import dev.weightsync.client.Tensor;
import dev.weightsync.client.WeightSyncClient;
import dev.weightsync.core.quant.Bf16;
import dev.weightsync.core.tensor.DType;
import dev.weightsync.core.tensor.TensorSpec;
import dev.weightsync.proto.v1.UpdateWeightsRequest;
import dev.weightsync.proto.v1.UpdateWeightsResponse;
import dev.weightsync.proto.v1.WeightSyncGrpc;
import dev.weightsync.server.Sidecar;
import dev.weightsync.server.config.ConfigLoader;
import io.grpc.Server;
import io.grpc.Status;
import io.grpc.netty.NettyServerBuilder;
import io.grpc.stub.StreamObserver;
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
import java.util.zip.CRC32C;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code weightsync bench ingest}: on one machine, in one run, the same BF16 bytes moved (a) over
 * raw TCP between two Java sockets on loopback, (b) through {@code UpdateWeights} into a server
 * that validates each chunk (CRC32C) and discards it, and (c) through a full update (ingest,
 * quantize to fp8-block, stage, a stand-in engine), each with 1 and with S parallel streams.
 * Every case runs {@code --rounds} times, interleaved, and the best round is reported beside the
 * first: a sidecar is a long-running process, and on two cores the JIT needs a few gigabytes
 * before the gRPC path reaches its steady speed (the first round shows about half of it).
 */
@Command(name = "ingest", mixinStandardHelpOptions = true,
    description = "Ingest throughput: raw TCP vs UpdateWeights ingest-only vs a full update.")
final class BenchIngestCommand implements Callable<Integer> {

  @Option(names = "--bytes", defaultValue = "1GiB", converter = ByteSizeConverter.class,
      description = "BF16 bytes per run (default ${DEFAULT-VALUE}).")
  long bytes;

  @Option(names = "--streams", defaultValue = "4", description = "The parallel case's stream count (default ${DEFAULT-VALUE}).")
  int streams;

  @Option(names = "--rounds", defaultValue = "3", description = "Times each case runs; the best is reported (default ${DEFAULT-VALUE}).")
  int rounds;

  @Option(names = "--device", defaultValue = "cpu", description = "The full update's quantizer: cpu or cuda[:N] (default ${DEFAULT-VALUE}).")
  String device;

  @Option(names = "--staging-dir", description = "Staging for the full update (default: a temporary folder under /dev/shm when it exists).")
  Path stagingDir;

  private static final int CHUNK = 4 << 20;

  @Override
  public Integer call() throws Exception {
    if (rounds < 1 || streams < 1) {
      throw new IllegalArgumentException("--rounds and --streams must be at least 1");
    }
    TensorSpec shape = TensorSpec.of("w", DType.BF16, 4096, 4096); // 32 MiB a tensor
    int count = (int) Math.max(streams, bytes / shape.byteLength() / streams * streams);
    long total = count * shape.byteLength();
    ByteBuffer data = randomBf16(shape.byteLength());
    List<Tensor> tensors = new ArrayList<>();
    for (int i = 0; i < count; i++) {
      tensors.add(Tensor.of(TensorSpec.of("model.layers." + i + ".mlp.up_proj.weight", DType.BF16,
          4096, 4096), data.duplicate()));
    }
    System.out.printf(Locale.ROOT, "%d tensors of 4096 x 4096 BF16 = %.2f GB per run, %d cores%n",
        count, total / 1e9, Runtime.getRuntime().availableProcessors());
    double[][] best = new double[3][2];
    double[][] cold = new double[3][2];
    int[] streamCounts = {1, streams};
    for (int round = 0; round < rounds; round++) {
      for (int s = 0; s < 2; s++) {
        int n = streamCounts[s];
        String run = "r" + round;
        double[] seconds = {tcp(total, n), ingestOnly(tensors, n, run), fullUpdate(tensors, n, run)};
        for (int c = 0; c < 3; c++) {
          double g = total / seconds[c] / 1e9;
          best[c][s] = Math.max(best[c][s], g);
          cold[c][s] = round == 0 ? g : cold[c][s];
        }
      }
      System.out.printf(Locale.ROOT, "round %d of %d done%n", round + 1, rounds);
    }
    String[] names = {"(a) raw TCP, loopback", "(b) UpdateWeights ingest only", "(c) full update (fp8-block, " + device + ")"};
    System.out.printf(Locale.ROOT, "best of %d rounds%n%-34s %12s %12s%n", rounds, "", "1 stream",
        streams + " streams");
    for (int c = 0; c < 3; c++) {
      System.out.printf(Locale.ROOT, "%-34s %8.2f GB/s %7.2f GB/s   (first round, cold JIT: %.2f / %.2f)%n",
          names[c], best[c][0], best[c][1], cold[c][0], cold[c][1]);
    }
    for (int s = 0; s < 2; s++) {
      System.out.printf(Locale.ROOT, "%d stream(s): (b)/(a) = %.0f%%, (c)/(b) = %.0f%%%n",
          streamCounts[s], 100 * best[1][s] / best[0][s], 100 * best[2][s] / best[1][s]);
    }
    return 0;
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

  /** A server that checks each chunk's CRC32C and drops it: gRPC and protobuf, nothing else. */
  private static final class DiscardingService extends WeightSyncGrpc.WeightSyncImplBase {
    @Override
    public StreamObserver<UpdateWeightsRequest> updateWeights(
        StreamObserver<UpdateWeightsResponse> responses) {
      return new StreamObserver<>() {
        long received;
        String version = "";

        @Override
        public void onNext(UpdateWeightsRequest r) {
          if (r.hasHeader()) {
            version = r.getHeader().getWeightVersion();
          } else if (r.hasChunk()) {
            CRC32C crc = new CRC32C();
            crc.update(r.getChunk().getData().asReadOnlyByteBuffer());
            if ((int) crc.getValue() != r.getChunk().getCrc32C()) {
              responses.onError(Status.INVALID_ARGUMENT.withDescription("CRC32C").asRuntimeException());
            }
            received += r.getChunk().getData().size();
          }
        }

        @Override
        public void onError(Throwable t) {}

        @Override
        public void onCompleted() {
          responses.onNext(UpdateWeightsResponse.newBuilder().setWeightVersion(version)
              .setBytesIn(received).build());
          responses.onCompleted();
        }
      };
    }
  }

  private static double ingestOnly(List<Tensor> tensors, int n, String run) throws Exception {
    Server server = NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", 0))
        .maxInboundMessageSize(8 << 20).flowControlWindow(4 << 20)
        .addService(new DiscardingService()).build().start();
    try {
      return push("127.0.0.1:" + server.getPort(), tensors, n, "ingest-" + run);
    } finally {
      server.shutdownNow().awaitTermination();
    }
  }

  private double fullUpdate(List<Tensor> tensors, int n, String run) throws Exception {
    Path root = stagingDir != null ? stagingDir
        : Files.isDirectory(Path.of("/dev/shm")) ? Files.createTempDirectory(Path.of("/dev/shm"), "ws-bench-")
        : Files.createTempDirectory("ws-bench-");
    try (StandInEngine engine = new StandInEngine(0, null).start();
        Sidecar sidecar = new Sidecar(ConfigLoader.load(null, Map.of(), Map.of("port", 0,
            "metrics-port", -1, "format", "fp8-block", "device", device, "keep-versions", 1,
            "staging-dir", root.resolve("staging").toString(),
            "sglang-url", List.of(engine.url())))).start()) {
      return push("127.0.0.1:" + sidecar.port(), tensors, n, "full-" + run);
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
