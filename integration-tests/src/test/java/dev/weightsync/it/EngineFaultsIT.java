package dev.weightsync.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.weightsync.cli.engine.StandInEngine;
import dev.weightsync.proto.v1.EngineOutcome;
import io.grpc.StatusRuntimeException;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Engine faults beyond bad answers: an engine that is down, one slower than the engine timeout,
 * and one that goes away mid-session (its connections reset). Each is reported and followed by a
 * version that loads, leaving the engine unpaused on it.
 */
class EngineFaultsIT {

  @TempDir Path tmp;

  @Test
  void anEngineThatIsDownIsReportedAndTheNextVersionLoadsOnceItIsBack() throws Exception {
    try (SidecarHarness h = new SidecarHarness(tmp, Map.of("engine-retries", 0))) {
      int port = h.engine.port();
      h.engine.close();
      assertThatThrownBy(() -> h.client.pushFolder(Launcher.golden("bf16"), "1", 0, 1))
          .isInstanceOf(StatusRuntimeException.class)
          .hasMessageContaining("FAILED_UNTOUCHED").hasMessageContaining("pause_generation failed");
      try (StandInEngine back = new StandInEngine(port, null).start()) {
        assertThat(h.client.pushFolder(Launcher.golden("bf16"), "2", 0, 1).getEngines(0)
            .getOutcome()).isEqualTo(EngineOutcome.LOADED);
        assertThat(back.weightVersion()).isEqualTo("2");
        assertThat(back.paused()).isFalse();
      }
    }
  }

  @Test
  void anEngineSlowerThanTheTimeoutIsLeftUnpausedAndTheNextVersionLoads() throws Exception {
    try (SidecarHarness h = new SidecarHarness(tmp, Map.of("engine-timeout", "300ms",
        "engine-retries", 0))) {
      h.engine.faults(f -> f.slowMillis = 800);
      assertThatThrownBy(() -> h.client.pushFolder(Launcher.golden("bf16"), "1", 0, 1))
          .isInstanceOf(StatusRuntimeException.class).hasMessageContaining("FAILED_");
      // the engine finishes the calls that timed out on our side (all sent: the answer came
      // after the session ended)
      for (long end = System.nanoTime() + 30_000_000_000L; h.engine.inFlight() > 0; ) {
        assertThat(System.nanoTime()).as("the engine's slow calls never ended").isLessThan(end);
        Thread.sleep(10);
      }
      h.engine.faults(f -> f.slowMillis = 0);
      assertThat(h.client.pushFolder(Launcher.golden("bf16"), "2", 0, 1).getEngines(0)
          .getOutcome()).isEqualTo(EngineOutcome.LOADED);
      assertThat(h.engine.weightVersion()).isEqualTo("2");
      assertThat(h.engine.paused()).isFalse();
    }
  }

  @Test
  void anEngineThatGoesAwayMidSessionIsReportedAndItsReplacementLoadsTheNextVersion()
      throws Exception {
    try (SidecarHarness h = new SidecarHarness(tmp, Map.of("engine-retries", 0))) {
      int port = h.engine.port();
      h.engine.faults(f -> f.slowMillis = 400);
      var push = java.util.concurrent.CompletableFuture.supplyAsync(() -> {
        try {
          return h.client.pushFolder(Launcher.golden("bf16"), "1", 0, 1);
        } catch (Exception e) {
          return e;
        }
      });
      for (int i = 0; i < 200 && !h.engine.routes().contains("/pause_generation"); i++) {
        Thread.sleep(10);
      }
      h.engine.close(); // open connections are reset, new ones refused
      Object outcome = push.get();
      assertThat(outcome).isInstanceOf(StatusRuntimeException.class);
      assertThat(((Exception) outcome).getMessage()).contains("engine(s) failed");
      try (StandInEngine replacement = new StandInEngine(port, null).start()) {
        assertThat(h.client.pushFolder(Launcher.golden("bf16"), "2", 0, 1).getEngines(0)
            .getOutcome()).isEqualTo(EngineOutcome.LOADED);
        assertThat(replacement.paused()).isFalse();
        assertThat(replacement.weightVersion()).isEqualTo("2");
      }
    }
  }
}
