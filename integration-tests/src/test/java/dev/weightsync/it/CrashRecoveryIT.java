package dev.weightsync.it;

import static org.assertj.core.api.Assertions.assertThat;

import dev.weightsync.cli.engine.StandInEngine;
import dev.weightsync.client.WeightSyncClient;
import java.io.IOException;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A sidecar killed with SIGKILL in the middle of an engine update session, then started again:
 * the engine it had paused is resumed (it reports a complete version), and the staging folder
 * holds only complete versions.
 */
class CrashRecoveryIT {

  @TempDir Path tmp;

  private static int freePort() throws IOException {
    try (ServerSocket s = new ServerSocket(0)) {
      return s.getLocalPort();
    }
  }

  private Process serve(int port, String engineUrl, Path log) throws Exception {
    Process p = Launcher.start(new ProcessBuilder(Launcher.root().resolve("bin/weightsync").toString(), "serve",
        "--port", String.valueOf(port), "--metrics-port", "-1", "--device", "cpu",
        "--staging-dir", tmp.resolve("staging").toString(), "--sglang-url", engineUrl)
        .redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile()))
        );
    Launcher.awaitPort(port, p, log);
    return p;
  }

  @Test
  void aSidecarKilledMidSessionResumesTheEngineItPausedWhenItComesBack() throws Exception {
    Path log = tmp.resolve("serve-1.log");
    Path log2 = tmp.resolve("serve-2.log");
    int port = freePort();
    try (StandInEngine engine = new StandInEngine(0, null).start()) {
      Process first = serve(port, engine.url(), log);
      try (WeightSyncClient c = WeightSyncClient.connect("127.0.0.1:" + port)) {
        c.pushFolder(Launcher.golden("bf16"), "1", 0, 1);
      }
      assertThat(engine.weightVersion()).isEqualTo("1");

      engine.faults(f -> f.slowMillis = 1500); // every engine call takes 1.5 s: time to kill
      CompletableFuture<Void> push = CompletableFuture.runAsync(() -> {
        try (WeightSyncClient c = WeightSyncClient.connect("127.0.0.1:" + port)) {
          c.pushFolder(Launcher.golden("bf16"), "2", 0, 1);
        } catch (Exception e) {
          // the sidecar dies under it: expected
        }
      });
      for (int i = 0; i < 400 && !engine.paused(); i++) {
        Thread.sleep(10);
      }
      assertThat(engine.paused()).as("the engine is paused mid-session").isTrue();
      first.destroyForcibly(); // SIGKILL: no shutdown hook, no cleanup
      assertThat(first.waitFor(30, TimeUnit.SECONDS)).isTrue();
      push.get(60, TimeUnit.SECONDS);
      Thread.sleep(2000); // let the engine finish the call it was in
      assertThat(engine.paused()).as("nobody resumed it yet").isTrue();

      engine.faults(f -> f.slowMillis = 0);
      Process second = serve(port, engine.url(), log2);
      try {
        for (int i = 0; i < 300 && engine.paused(); i++) {
          Thread.sleep(20);
        }
        assertThat(engine.paused()).as("resumed by the restarted sidecar").isFalse();
        assertThat(engine.weightVersion()).isIn("1", "2");
        for (int i = 0; i < 100 && !Files.readString(log2).contains("resumed;"); i++) {
          Thread.sleep(50);
        }
        assertThat(Files.readString(log2)).contains("resumed; it was paused by this sidecar");
        try (Stream<Path> s = Files.list(tmp.resolve("staging"))) {
          List<String> names = s.map(p -> p.getFileName().toString()).toList();
          assertThat(names).noneMatch(n -> n.startsWith(".tmp-")); // leftovers removed at start
          for (String n : names.stream().filter(n -> !n.startsWith(".")).toList()) {
            assertThat(Launcher.compare(Launcher.golden("fp8"), tmp.resolve("staging").resolve(n))
                .exitCode()).as("staged version " + n + " is complete").isZero();
          }
        }
        try (WeightSyncClient c = WeightSyncClient.connect("127.0.0.1:" + port)) {
          c.pushFolder(Launcher.golden("bf16"), "3", 0, 1);
          assertThat(c.status().getEngines(0).getState()).isEqualTo("SERVING");
        }
        assertThat(engine.weightVersion()).isEqualTo("3");
      } finally {
        second.destroy();
        second.waitFor(30, TimeUnit.SECONDS);
      }
    }
  }
}
