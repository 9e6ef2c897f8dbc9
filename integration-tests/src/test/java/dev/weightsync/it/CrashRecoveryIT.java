package dev.weightsync.it;

import static org.assertj.core.api.Assertions.assertThat;

import dev.weightsync.cli.engine.StandInEngine;
import dev.weightsync.client.WeightSyncClient;
import dev.weightsync.server.engine.SessionLedger;
import java.io.IOException;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A sidecar killed (SIGKILL) or stopped (SIGTERM) in the middle of an engine update session, then
 * started again. The rule: an engine whose weights may be a mix of two versions is never resumed
 * — not on the label it reports, which SGLang changes only when a load succeeds — until a complete
 * staged version has been loaded and confirmed. The stand-in engine itself counts every
 * continue_generation that reaches it while its weights are mixed, and each test ends by asserting
 * there were none.
 */
class CrashRecoveryIT {

  @TempDir Path tmp;

  private static int freePort() throws IOException {
    try (ServerSocket s = new ServerSocket(0)) {
      return s.getLocalPort();
    }
  }

  private Process serve(int port, String engineUrl, Path log, String... extra) throws Exception {
    List<String> cmd = new ArrayList<>(List.of(Launcher.root().resolve("bin/weightsync").toString(),
        "serve", "--port", String.valueOf(port), "--metrics-port", "-1", "--device", "cpu",
        "--staging-dir", tmp.resolve("staging").toString(), "--sglang-url", engineUrl,
        "--engine-retries", "1", "--engine-backoff", "10ms"));
    cmd.addAll(List.of(extra));
    Process p = Launcher.start(new ProcessBuilder(cmd).redirectErrorStream(true)
        .redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile())));
    Launcher.awaitPort(port, p, log);
    return p;
  }

  /** Waits up to {@code seconds} for {@code condition}, an event the test can observe. */
  private static void await(String what, int seconds, BooleanSupplier condition) throws Exception {
    long deadline = System.nanoTime() + seconds * 1_000_000_000L;
    while (!condition.getAsBoolean()) {
      if (System.nanoTime() > deadline) {
        throw new AssertionError("timed out waiting for: " + what);
      }
      Thread.sleep(20);
    }
  }

  private static long loadsOf(StandInEngine engine, String version) {
    return engine.calls().stream().filter(c -> c.route().equals("/update_weights_from_disk")
        && c.body().path("weight_version").asText().equals(version)).count();
  }

  private static CompletableFuture<Void> pushAsync(int port, String version) {
    return CompletableFuture.runAsync(() -> {
      try (WeightSyncClient c = WeightSyncClient.connect("127.0.0.1:" + port)) {
        c.pushFolder(Launcher.golden("bf16"), version, 0, 1);
      } catch (Exception e) {
        // the sidecar dies under it, or the version fails: the engine's state is what is checked
      }
    });
  }

  private static void push(int port, String version) throws Exception {
    try (WeightSyncClient c = WeightSyncClient.connect("127.0.0.1:" + port)) {
      c.pushFolder(Launcher.golden("bf16"), version, 0, 1);
    }
  }

  private void assertOnlyCompleteVersionsStaged() throws Exception {
    try (Stream<Path> s = Files.list(tmp.resolve("staging"))) {
      List<String> names = s.map(p -> p.getFileName().toString()).toList();
      assertThat(names).noneMatch(n -> n.startsWith(".tmp-")); // leftovers removed at start
      for (String n : names.stream().filter(n -> !n.startsWith(".")).toList()) {
        assertThat(Launcher.compare(Launcher.golden("fp8"), tmp.resolve("staging").resolve(n))
            .exitCode()).as("staged version " + n + " is complete").isZero();
      }
    }
  }

  @Test
  void killedWhileTheEngineLoadsTheRestartedSidecarWaitsForACompleteVersionBeforeResuming()
      throws Exception {
    int port = freePort();
    try (StandInEngine engine = new StandInEngine(0, null).start()) {
      Process first = serve(port, engine.url(), tmp.resolve("serve-1.log"));
      push(port, "1");
      engine.faults(f -> f.loadMillis = 3000); // the load of version 2 outlives the sidecar
      CompletableFuture<Void> pushing = pushAsync(port, "2");
      await("the load of version 2 reaches the engine", 60, () -> loadsOf(engine, "2") == 1);
      first.destroyForcibly();
      assertThat(first.waitFor(30, TimeUnit.SECONDS)).isTrue();
      pushing.get(60, TimeUnit.SECONDS);
      assertThat(engine.paused()).isTrue();

      Process second = serve(port, engine.url(), tmp.resolve("serve-2.log"));
      await("the engine resumed", 60, () -> !engine.paused());
      // recovery loaded the newest complete staged version behind the one still running, and
      // resumed only once that was confirmed
      assertThat(loadsOf(engine, "2")).isEqualTo(2);
      assertThat(engine.weightVersion()).isEqualTo("2");
      assertThat(engine.violations()).as("resumed over mixed weights").isZero();
      try (WeightSyncClient c = WeightSyncClient.connect("127.0.0.1:" + port)) {
        // the sidecar records SERVING once the resume is answered, just after the engine saw it
        await("status says SERVING", 30, () -> c.status().getEngines(0).getState().equals("SERVING"));
        assertThat(c.status().getEngines(0).getLoadedVersion()).isEqualTo("2");
      }
      assertThat(Files.exists(tmp.resolve("staging").resolve(SessionLedger.FILE))).isFalse();
      assertOnlyCompleteVersionsStaged();
      engine.faults(f -> f.loadMillis = 0);
      push(port, "3");
      assertThat(engine.weightVersion()).isEqualTo("3");
      assertThat(engine.violations()).isZero();
      second.destroy();
      second.waitFor(30, TimeUnit.SECONDS);
    }
  }

  @Test
  void killedInTheSessionAfterAFailedLoadTheEngineIsNotResumedOnItsOldLabel() throws Exception {
    int port = freePort();
    try (StandInEngine engine = new StandInEngine(0, null).start()) {
      Process first = serve(port, engine.url(), tmp.resolve("serve-1.log"));
      push(port, "1");
      engine.faults(f -> f.loadFailsForever = true);
      pushAsync(port, "2").get(60, TimeUnit.SECONDS); // fails: the engine is left paused, mixed
      assertThat(engine.paused()).isTrue();
      assertThat(engine.mixed()).isTrue();
      assertThat(engine.weightVersion()).isEqualTo("1"); // SGLang keeps the old label

      engine.faults(f -> {
        f.loadFailsForever = false;
        f.slowMillis = 1500; // time to kill the next session in its middle
      });
      CompletableFuture<Void> pushing = pushAsync(port, "3");
      await("the next session reaches the engine", 60, () -> engine.routes().stream()
          .filter("/pause_generation"::equals).count() == 3);
      first.destroyForcibly();
      assertThat(first.waitFor(30, TimeUnit.SECONDS)).isTrue();
      pushing.get(60, TimeUnit.SECONDS);
      engine.faults(f -> f.slowMillis = 0);

      Process second = serve(port, engine.url(), tmp.resolve("serve-2.log"));
      await("the engine resumed", 60, () -> !engine.paused());
      assertThat(engine.violations()).as("resumed over mixed weights").isZero();
      assertThat(engine.mixed()).isFalse();
      assertThat(engine.weightVersion()).isEqualTo("3"); // the newest complete staged version
      assertThat(Files.readString(tmp.resolve("serve-2.log")))
          .contains("loading the newest complete staged version '3' before resuming it");
      assertOnlyCompleteVersionsStaged();
      second.destroy();
      second.waitFor(30, TimeUnit.SECONDS);
    }
  }

  @Test
  void stoppedDuringALoadLongerThanTheGraceTheEngineStaysPausedAndTheNextStartRecoversIt()
      throws Exception {
    int port = freePort();
    Path log = tmp.resolve("serve-1.log");
    try (StandInEngine engine = new StandInEngine(0, null).start()) {
      Process first = serve(port, engine.url(), log, "--shutdown-grace", "1s");
      push(port, "1");
      engine.faults(f -> f.loadMillis = 4000); // longer than the grace
      CompletableFuture<Void> pushing = pushAsync(port, "2");
      await("the load of version 2 reaches the engine", 60, () -> loadsOf(engine, "2") == 1);
      first.destroy(); // SIGTERM
      assertThat(first.waitFor(60, TimeUnit.SECONDS)).as("exits after the grace").isTrue();
      pushing.get(60, TimeUnit.SECONDS);
      assertThat(Files.readString(log)).contains("ending them through their leases");
      // the load may still be running inside the engine: never resumed by the stopping sidecar
      assertThat(engine.violations()).isZero();
      List<String> routes = engine.routes();
      int load2 = routes.lastIndexOf("/update_weights_from_disk");
      assertThat(routes.subList(load2, routes.size())).doesNotContain("/continue_generation");
      assertThat(engine.paused()).isTrue();
      assertThat(Files.readString(tmp.resolve("staging").resolve(SessionLedger.FILE)))
          .contains("MAYBE_MIXED");

      engine.faults(f -> f.loadMillis = 0);
      Process second = serve(port, engine.url(), tmp.resolve("serve-2.log"));
      await("the engine resumed", 60, () -> !engine.paused());
      assertThat(engine.violations()).isZero();
      assertThat(engine.weightVersion()).isEqualTo("2");
      second.destroy();
      second.waitFor(30, TimeUnit.SECONDS);
    }
  }
}
