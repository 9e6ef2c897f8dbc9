package dev.weightsync.it;

import dev.weightsync.cli.engine.StandInEngine;
import dev.weightsync.client.WeightSyncClient;
import dev.weightsync.server.Sidecar;
import dev.weightsync.server.config.ConfigLoader;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

/** A sidecar and a stand-in engine on loopback ports, with a client; closed together. */
final class SidecarHarness implements AutoCloseable {
  final StandInEngine engine;
  final Sidecar sidecar;
  final WeightSyncClient client;
  final Path staging;

  SidecarHarness(Path dir, Map<String, Object> extra) throws IOException {
    this(dir, extra, null);
  }

  SidecarHarness(Path dir, Map<String, Object> extra, String adminKey) throws IOException {
    this(dir, extra, adminKey, null);
  }

  /** With {@code clientToken}, the harness's client sends it (a sidecar with auth-token-file). */
  SidecarHarness(Path dir, Map<String, Object> extra, String adminKey, String clientToken)
      throws IOException {
    engine = new StandInEngine(0, adminKey).start();
    staging = dir.resolve("staging");
    Map<String, Object> flags = new HashMap<>(Map.of("port", 0, "metrics-port", -1,
        "staging-dir", staging.toString(), "sglang-url", List.of(engine.url()),
        "part-timeout", "30s", "engine-retries", 1, "keep-versions", 10,
        "engine-backoff", "10ms"));
    flags.putAll(extra);
    sidecar = new Sidecar(ConfigLoader.load(null, Map.of(), flags)).start();
    String target = sidecar.port() > 0 ? "127.0.0.1:" + sidecar.port()
        : sidecar.listenersText().split(", ")[0]; // a sidecar on Unix sockets alone
    client = WeightSyncClient.connect(target, clientToken);
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
    sidecar.close();
    engine.close();
  }
}
