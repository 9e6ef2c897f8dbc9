package dev.weightsync.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.weightsync.cli.engine.StandInEngine;
import dev.weightsync.client.WeightSyncClient;
import dev.weightsync.proto.v1.EngineOutcome;
import dev.weightsync.proto.v1.EngineResult;
import dev.weightsync.proto.v1.UpdateWeightsResponse;
import dev.weightsync.server.Sidecar;
import dev.weightsync.server.config.ConfigLoader;
import io.grpc.StatusRuntimeException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * A sidecar driving vLLM stand-ins (weightsync engine --api vllm) end to end over real gRPC and
 * HTTP: golden pushes in every format, a mixed fleet with an SGLang stand-in beside, and the
 * staging folder seen by the engine at another path.
 */
class VllmEndToEndIT {

  @TempDir Path tmp;

  private Sidecar sidecar(Map<String, Object> extra) throws Exception {
    Map<String, Object> flags = new HashMap<>(Map.of("port", 0, "metrics-port", -1,
        "staging-dir", tmp.resolve("staging").toString(), "part-timeout", "30s",
        "engine-retries", 1, "keep-versions", 10, "engine-backoff", "10ms"));
    flags.putAll(extra);
    return new Sidecar(ConfigLoader.load(null, Map.of(), flags)).start();
  }

  private static WeightSyncClient client(Sidecar s) {
    return WeightSyncClient.connect("127.0.0.1:" + s.port());
  }

  @ParameterizedTest(name = "{0}")
  @CsvSource({"fp8-block,fp8,", "fp8-block-ue8m0,fp8_ue8m0,", "int4-group,int4_g128,128",
      "int4-group,int4_g32,32"})
  void aGoldenPushLoadsIntoVllmAndIsConfirmed(String format, String golden, Integer group)
      throws Exception {
    Map<String, Object> flags = new HashMap<>(Map.of("format", format));
    if (group != null) {
      flags.put("group-size", group);
    }
    try (StandInEngine vllm = new StandInEngine(0, null, StandInEngine.Api.VLLM).start()) {
      flags.put("vllm-url", List.of(vllm.url()));
      Sidecar s = sidecar(flags);
      try (WeightSyncClient c = client(s)) {
        UpdateWeightsResponse r = c.pushFolder(Launcher.golden("bf16"), "step-7", 0, 1);
        assertThat(r.getEnginesList()).singleElement().satisfies(e -> {
          assertThat(e.getOutcome()).isEqualTo(EngineOutcome.LOADED);
          assertThat(e.getLoadedVersion()).isEqualTo("step-7");
        });
        assertThat(Launcher.compare(Launcher.golden(golden), Path.of(r.getStagedPath()))
            .exitCode()).isZero();
        assertThat(vllm.weightVersion()).isEqualTo("step-7");
        assertThat(vllm.modelPath()).isEqualTo(r.getStagedPath());
        assertThat(vllm.loadedTensors()).isEqualTo(Launcher.counts(Launcher.golden(golden))
            .tensors());
        assertThat(vllm.routes()).containsExactly("/pause", "/init_weight_transfer_engine",
            "/start_weight_update", "/update_weights", "/finish_weight_update", "/weight_info",
            "/resume");
        assertThat(vllm.paused()).isFalse();
        assertThat(vllm.violations()).isZero();
        assertThat(c.status().getEnginesList()).singleElement()
            .satisfies(e -> assertThat(e.getState()).isEqualTo("SERVING"));
      } finally {
        s.close();
      }
    }
  }

  @Test
  void aMixedFleetReportsEachEngineAndThePolicyDecides() throws Exception {
    try (StandInEngine sglang = new StandInEngine(0, null).start();
        StandInEngine vllm = new StandInEngine(0, null, StandInEngine.Api.VLLM).start()) {
      Sidecar s = sidecar(Map.of("sglang-url", List.of(sglang.url()),
          "vllm-url", List.of(vllm.url())));
      try (WeightSyncClient c = client(s)) {
        UpdateWeightsResponse ok = c.pushFolder(Launcher.golden("bf16"), "1", 0, 1);
        assertThat(ok.getEnginesList()).extracting(EngineResult::getOutcome)
            .containsOnly(EngineOutcome.LOADED);
        assertThat(sglang.weightVersion()).isEqualTo("1");
        assertThat(vllm.weightVersion()).isEqualTo("1");

        vllm.faults(f -> f.loadFailures = 1); // inside vLLM: left mixed, and stuck in its update
        assertThatThrownBy(() -> c.pushFolder(Launcher.golden("bf16"), "2", 0, 1))
            .isInstanceOfSatisfying(StatusRuntimeException.class, e -> assertThat(
                e.getStatus().getDescription()).contains("1 of 2 engine(s) failed")
                .contains(vllm.url() + " FAILED_PAUSED"));
        assertThat(sglang.weightVersion()).isEqualTo("2");
        assertThat(sglang.paused()).isFalse();
        assertThat(vllm.paused()).as("never resumed over a mix").isTrue();
        assertThat(vllm.violations()).isZero();
        var states = c.status().getEnginesList();
        assertThat(states).anySatisfy(e -> {
          assertThat(e.getEngine()).isEqualTo(vllm.url());
          assertThat(e.getState()).isEqualTo("MAYBE_MIXED");
          assertThat(e.getOutOfDate()).isTrue();
        });

        vllm.restart(); // vLLM's update state clears only with a restart
        UpdateWeightsResponse back = c.pushFolder(Launcher.golden("bf16"), "3", 0, 1);
        assertThat(back.getEnginesList()).extracting(EngineResult::getOutcome)
            .containsOnly(EngineOutcome.LOADED);
        assertThat(vllm.weightVersion()).isEqualTo("3");
        assertThat(vllm.paused()).isFalse();
      } finally {
        s.close();
      }
    }
  }

  @Test
  void behindARelayEachEngineOfAMixedFleetIsReportedToTheTrainer() throws Exception {
    try (StandInEngine sglang = new StandInEngine(0, null).start();
        StandInEngine vllm = new StandInEngine(0, null, StandInEngine.Api.VLLM).start()) {
      Sidecar engineSide = new Sidecar(ConfigLoader.load(null, Map.of(), Map.of("role", "engine",
          "port", 0, "metrics-port", -1, "staging-dir", tmp.resolve("engine").toString(),
          "sglang-url", List.of(sglang.url()), "vllm-url", List.of(vllm.url()),
          "engine-retries", 0, "engine-backoff", "10ms", "part-timeout", "30s"))).start();
      Sidecar trainerSide = sidecar(Map.of("role", "trainer", "relay-to",
          List.of("127.0.0.1:" + engineSide.port()), "format", "int4-group"));
      try (WeightSyncClient c = client(trainerSide)) {
        UpdateWeightsResponse ok = c.pushFolder(Launcher.golden("bf16"), "r1", 0, 1);
        assertThat(ok.getEngines(0).getEnginesList()).extracting(EngineResult::getOutcome)
            .containsOnly(EngineOutcome.LOADED);
        assertThat(vllm.weightVersion()).isEqualTo("r1");
        assertThat(Launcher.compare(Launcher.golden("int4_g128"), Path.of(vllm.modelPath()))
            .exitCode()).isZero();

        vllm.faults(f -> f.loadFailures = 1);
        assertThatThrownBy(() -> c.pushFolder(Launcher.golden("bf16"), "r2", 0, 1))
            .isInstanceOfSatisfying(StatusRuntimeException.class, e -> assertThat(
                e.getStatus().getDescription()).contains(vllm.url()).contains("FAILED_PAUSED"));
        assertThat(sglang.weightVersion()).isEqualTo("r2");
        assertThat(vllm.paused()).isTrue();
        assertThat(vllm.violations()).isZero();
      } finally {
        trainerSide.close();
        engineSide.close();
      }
    }
  }

  @Test
  void theEngineIsToldTheFolderWhereItMountsTheStagingFolder() throws Exception {
    Path staging = Files.createDirectories(tmp.resolve("staging"));
    Path engineView = Files.createSymbolicLink(tmp.resolve("engine-view"), staging);
    try (StandInEngine vllm = new StandInEngine(0, null, StandInEngine.Api.VLLM).start()) {
      Sidecar s = sidecar(Map.of("vllm-url", List.of(vllm.url()),
          "engine-staging-dir", engineView.toString()));
      try (WeightSyncClient c = client(s)) {
        UpdateWeightsResponse r = c.pushFolder(Launcher.golden("bf16"), "v9", 0, 1);
        assertThat(r.getEngines(0).getOutcome()).isEqualTo(EngineOutcome.LOADED);
        assertThat(vllm.modelPath()).isEqualTo(engineView.resolve("v9").toString());
      } finally {
        s.close();
      }
    }
  }

  @Test
  void aVllmWithoutTheWeightTransferRoutesIsReportedWithWhatItNeeds() throws Exception {
    try (StandInEngine sglangOnly = new StandInEngine(0, null).start()) { // no vLLM routes
      Sidecar s = sidecar(Map.of("vllm-url", List.of(sglangOnly.url())));
      try (WeightSyncClient c = client(s)) {
        assertThatThrownBy(() -> c.pushFolder(Launcher.golden("bf16"), "1", 0, 1))
            .isInstanceOfSatisfying(StatusRuntimeException.class, e -> assertThat(
                e.getStatus().getDescription()).contains("VLLM_SERVER_DEV_MODE=1"));
        assertThat(sglangOnly.paused()).isFalse();
      } finally {
        s.close();
      }
    }
  }
}
