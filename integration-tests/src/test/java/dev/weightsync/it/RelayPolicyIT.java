package dev.weightsync.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.weightsync.cli.engine.StandInEngine;
import dev.weightsync.client.WeightSyncClient;
import dev.weightsync.proto.v1.EngineOutcome;
import dev.weightsync.proto.v1.EngineResult;
import dev.weightsync.proto.v1.EngineStatus;
import dev.weightsync.proto.v1.UpdateWeightsResponse;
import dev.weightsync.server.Sidecar;
import dev.weightsync.server.config.ConfigLoader;
import io.grpc.StatusRuntimeException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Disaggregated delivery policies over real sockets: one trainer-side sidecar relays to three
 * engine-side sidecars, each driving a stand-in engine; the second engine fails every load.
 */
class RelayPolicyIT {

  @TempDir Path tmp;
  private final List<StandInEngine> engines = new ArrayList<>();
  private final List<Sidecar> engineSide = new ArrayList<>();
  private Sidecar trainerSide;
  private WeightSyncClient client;

  private void start(String policy) throws Exception {
    List<String> targets = new ArrayList<>();
    for (int i = 0; i < 3; i++) {
      StandInEngine e = new StandInEngine(0, null).start();
      engines.add(e);
      Sidecar s = new Sidecar(ConfigLoader.load(null, Map.of(), Map.of("role", "engine",
          "port", 0, "metrics-port", -1, "staging-dir", tmp.resolve("engine-" + i).toString(),
          "sglang-url", List.of(e.url()), "engine-retries", 0, "engine-backoff", "10ms",
          "part-timeout", "30s"))).start();
      engineSide.add(s);
      targets.add("127.0.0.1:" + s.port());
    }
    Map<String, Object> flags = new HashMap<>(Map.of("role", "trainer", "port", 0,
        "metrics-port", -1, "staging-dir", tmp.resolve("trainer").toString(), "relay-to", targets,
        "format", "fp8-block", "policy", policy, "quorum", 0.6));
    trainerSide = new Sidecar(ConfigLoader.load(null, Map.of(), flags)).start();
    client = WeightSyncClient.connect("127.0.0.1:" + trainerSide.port());
    engines.get(1).faults(f -> f.loadFailsForever = true);
  }

  @AfterEach
  void stop() {
    if (client != null) {
      client.close();
    }
    if (trainerSide != null) {
      trainerSide.close();
    }
    engineSide.forEach(Sidecar::close);
    engines.forEach(StandInEngine::close);
  }

  private static EngineStatus statusOf(List<EngineStatus> all, int port) {
    return all.stream().filter(s -> s.getEngine().endsWith(":" + port)).findFirst().orElseThrow();
  }

  @Test
  void policyAllFailsTheVersionWhenOneEngineFailsAndMarksItOutOfDate() throws Exception {
    start("all");
    assertThatThrownBy(() -> client.pushFolder(Launcher.golden("bf16"), "7", 0, 1))
        .isInstanceOf(StatusRuntimeException.class)
        .hasMessageContaining("1 of 3 engine(s) failed (policy all needs 3)")
        .hasMessageContaining("127.0.0.1:" + engineSide.get(1).port());
    // No two-phase commit across engines: the others loaded it, and say so.
    assertThat(engines.get(0).weightVersion()).isEqualTo("7");
    assertThat(engines.get(2).weightVersion()).isEqualTo("7");
    assertThat(engines.get(1).weightVersion()).isNotEqualTo("7");
    var status = client.status().getEnginesList();
    assertThat(statusOf(status, engineSide.get(1).port()).getOutOfDate()).isTrue();
    assertThat(statusOf(status, engineSide.get(0).port()).getOutOfDate()).isFalse();
    assertThat(client.status().getRole()).isEqualTo("trainer");
  }

  @Test
  void quorumAcceptsTwoOfThreeReportsEachEngineAndCatchesTheFailedOneUpLater() throws Exception {
    start("quorum");
    UpdateWeightsResponse r = client.pushFolder(Launcher.golden("bf16"), "8", 0, 1);
    assertThat(r.getEnginesList()).hasSize(3);
    EngineResult failed = r.getEnginesList().stream()
        .filter(e -> e.getEngine().endsWith(":" + engineSide.get(1).port())).findFirst().orElseThrow();
    assertThat(failed.getOutcome()).isNotEqualTo(EngineOutcome.LOADED);
    assertThat(failed.getEnginesList()).singleElement().satisfies(behind -> {
      assertThat(behind.getEngine()).isEqualTo(engines.get(1).url());
      assertThat(behind.getOutcome()).isNotEqualTo(EngineOutcome.LOADED);
    });
    assertThat(r.getEnginesList().stream().filter(e -> e.getOutcome() == EngineOutcome.LOADED))
        .hasSize(2);
    assertThat(statusOf(client.status().getEnginesList(), engineSide.get(1).port()).getOutOfDate())
        .isTrue();
    assertThat(client.status().getLastVersion()).isEqualTo("8");

    engines.get(1).faults(f -> f.loadFailsForever = false);
    UpdateWeightsResponse next = client.pushFolder(Launcher.golden("bf16"), "9", 0, 1);
    assertThat(next.getEnginesList()).allMatch(e -> e.getOutcome() == EngineOutcome.LOADED);
    assertThat(engines).allMatch(e -> e.weightVersion().equals("9"));
    assertThat(client.status().getEnginesList()).noneMatch(EngineStatus::getOutOfDate);
    assertThat(Launcher.compare(Launcher.golden("fp8"), tmp.resolve("engine-1/9")).exitCode())
        .isZero();
  }

  @Test
  void aParallelPushIntoATrainerSideSidecarIsRelayedPartByPartAtOnce() throws Exception {
    start("all");
    engines.get(1).faults(f -> f.loadFailsForever = false);
    // four parts, each relayed to each target as sub-parts over relay-streams connections
    UpdateWeightsResponse r = client.pushFolderParallel(Launcher.golden("bf16"), "p4", 4);
    assertThat(r.getEnginesList()).hasSize(3).allMatch(e -> e.getOutcome() == EngineOutcome.LOADED);
    for (int i = 0; i < 3; i++) {
      assertThat(engines.get(i).weightVersion()).isEqualTo("p4");
      Launcher.Result cmp = Launcher.compare(Launcher.golden("fp8"), tmp.resolve("engine-" + i + "/p4"));
      assertThat(cmp.exitCode()).as(cmp.stdout() + cmp.stderr()).isZero();
    }
  }

  @Test
  void aTrainerSideSidecarRefusesQuantizedPartsAndAnEngineSideOneTakesThem() throws Exception {
    start("all");
    try (RawStream raw = new RawStream(trainerSide.port())) {
      var header = dev.weightsync.proto.v1.UpdateWeightsRequest.newBuilder().setHeader(
          dev.weightsync.proto.v1.Header.newBuilder().setWeightVersion("1")
              .setPayload(dev.weightsync.proto.v1.Payload.PAYLOAD_QUANTIZED)).build();
      io.grpc.Status s = raw.send(List.of(header), true, false);
      assertThat(s.getCode()).isEqualTo(io.grpc.Status.Code.FAILED_PRECONDITION);
      assertThat(s.getDescription()).contains("engine-side sidecars");
    }
    try (RawStream raw = new RawStream(engineSide.get(0).port())) {
      var header = dev.weightsync.proto.v1.UpdateWeightsRequest.newBuilder().setHeader(
          dev.weightsync.proto.v1.Header.newBuilder().setWeightVersion("1")
              .setPayload(dev.weightsync.proto.v1.Payload.PAYLOAD_QUANTIZED)
              .setQuantizationConfigJson("[not an object")).build();
      io.grpc.Status s = raw.send(List.of(header), true, false);
      assertThat(s.getCode()).isEqualTo(io.grpc.Status.Code.INVALID_ARGUMENT);
      assertThat(s.getDescription()).contains("must be a JSON object");
    }
  }
}
