package dev.weightsync.it;

import dev.weightsync.cli.engine.StandInEngine;
import dev.weightsync.client.WeightSyncClient;
import dev.weightsync.client.WireLimits;
import dev.weightsync.server.Sidecar;
import dev.weightsync.server.config.ConfigLoader;
import io.grpc.ManagedChannel;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import io.grpc.netty.NettyChannelBuilder;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.Stream;

/**
 * A sidecar and a stand-in engine, with a client; closed together. The sidecar listens on a
 * loopback port, or, made with {@link #inProcess}, on grpc-java's in-process transport (the same
 * services and interceptors without a socket; the engine is still reached over real HTTP).
 */
final class SidecarHarness implements AutoCloseable {
  private static final AtomicInteger NAMES = new AtomicInteger();

  final StandInEngine engine;
  final Sidecar sidecar;
  final WeightSyncClient client;
  final Path staging;
  /** The in-process server's name, or null on a port. */
  private final String inProcessName;
  /** The in-process client's channel (the client leaves a given channel to its owner). */
  private ManagedChannel clientChannel;

  SidecarHarness(Path dir, Map<String, Object> extra) throws IOException {
    this(dir, extra, null);
  }

  SidecarHarness(Path dir, Map<String, Object> extra, String adminKey) throws IOException {
    this(dir, extra, adminKey, null);
  }

  /** With {@code clientToken}, the harness's client sends it (a sidecar with auth-token-file). */
  SidecarHarness(Path dir, Map<String, Object> extra, String adminKey, String clientToken)
      throws IOException {
    this(dir, extra, adminKey, clientToken, null);
  }

  /** A harness whose sidecar serves gRPC in-process only. */
  static SidecarHarness inProcess(Path dir, Map<String, Object> extra) throws IOException {
    return new SidecarHarness(dir, extra, null, null, "weightsync-it-" + NAMES.incrementAndGet());
  }

  private SidecarHarness(Path dir, Map<String, Object> extra, String adminKey, String clientToken,
      String inProcessName) throws IOException {
    this.inProcessName = inProcessName;
    engine = new StandInEngine(0, adminKey).start();
    staging = dir.resolve("staging");
    Map<String, Object> flags = new HashMap<>(Map.of("port", 0, "metrics-port", -1,
        "staging-dir", staging.toString(), "sglang-url", List.of(engine.url()),
        "part-timeout", "30s", "engine-retries", 1, "keep-versions", 10,
        "engine-backoff", "10ms"));
    flags.putAll(extra);
    if (inProcessName != null) {
      sidecar = new Sidecar(ConfigLoader.load(null, Map.of(), flags),
          InProcessServerBuilder.forName(inProcessName)).start();
      clientChannel = channel();
      client = new WeightSyncClient(clientChannel, WeightSyncClient.DEFAULT_CHUNK_BYTES, 3);
      return;
    }
    sidecar = new Sidecar(ConfigLoader.load(null, Map.of(), flags)).start();
    String target = sidecar.port() > 0 ? "127.0.0.1:" + sidecar.port()
        : sidecar.listenersText().split(", ")[0]; // a sidecar on Unix sockets alone
    client = WeightSyncClient.connect(target, clientToken);
  }

  /** A new channel to the sidecar (in-process or loopback), for the caller to close. */
  ManagedChannel channel() {
    return inProcessName != null ? InProcessChannelBuilder.forName(inProcessName).build()
        : NettyChannelBuilder.forAddress("127.0.0.1", sidecar.port()).usePlaintext()
            .maxInboundMessageSize(WireLimits.MAX_MESSAGE_BYTES).build();
  }

  /** Published version folders (not temporary ones). */
  List<String> stagedVersions() throws IOException {
    try (Stream<Path> s = Files.list(staging)) {
      return s.map(p -> p.getFileName().toString()).filter(n -> !n.startsWith(".")).sorted().toList();
    }
  }

  /** Everything in the staging folder, temporary folders included. */
  List<String> stagingEntries() throws IOException {
    try (Stream<Path> s = Files.list(staging)) {
      return s.map(p -> p.getFileName().toString()).sorted().toList();
    }
  }

  @Override
  public void close() {
    client.close();
    if (clientChannel != null) {
      clientChannel.shutdownNow();
    }
    sidecar.close();
    engine.close();
  }
}
