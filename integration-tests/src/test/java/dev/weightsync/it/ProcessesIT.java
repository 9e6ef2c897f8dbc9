package dev.weightsync.it;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The commands as users run them: separate processes talking over loopback sockets. */
class ProcessesIT {

  @TempDir Path tmp;

  private static int freePort() throws IOException {
    try (ServerSocket s = new ServerSocket(0)) {
      return s.getLocalPort();
    }
  }

  private static Process start(Path log, String... args) throws IOException {
    List<String> cmd = new java.util.ArrayList<>();
    cmd.add(Launcher.root().resolve("bin/weightsync").toString());
    cmd.addAll(List.of(args));
    return Launcher.start(new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile()));
  }

  @Test
  void servePushAndStatusAcrossProcesses() throws Exception {
    int enginePort = freePort();
    int grpcPort = freePort();
    Path engineLog = tmp.resolve("engine.log");
    Path serveLog = tmp.resolve("serve.log");
    Process engine = start(engineLog, "engine", "--port", String.valueOf(enginePort));
    Process serve = null;
    try {
      Launcher.awaitPort(enginePort, engine, engineLog);
      serve = start(serveLog, "serve", "--port", String.valueOf(grpcPort), "--metrics-port", "-1",
          "--format", "fp8-block", "--staging-dir", tmp.resolve("staging").toString(),
          "--sglang-url", "http://127.0.0.1:" + enginePort, "--part-timeout", "8s");
      Launcher.awaitPort(grpcPort, serve, serveLog);
      String target = "127.0.0.1:" + grpcPort;

      Launcher.Result push = Launcher.weightsync("push", "--target", target, "--model-dir",
          Launcher.golden("bf16").toString(), "--version", "42");
      assertThat(push.exitCode()).as(push.stderr()).isZero();
      assertThat(push.stdout()).contains("LOADED, serving '42'");
      Launcher.Counts in = Launcher.counts(Launcher.golden("bf16"));
      assertThat(push.stderr()) // the last progress line, then what the call waits for
          .contains("[" + in.tensors() + "/" + in.tensors() + " tensors, ")
          .containsPattern(" GB/s\\]\\nversion 42 committed; waiting for the engines\\n");

      Launcher.Result part = Launcher.weightsync("push", "--target", target, "--model-dir",
          Launcher.golden("bf16").toString(), "--version", "44", "--part", "0", "--parts", "2");
      assertThat(part.stderr()).contains("part 0 of 2 committed; waiting for the other parts and the engines");
      assertThat(Launcher.compare(Launcher.golden("fp8"), tmp.resolve("staging/42")).exitCode()).isZero();

      Launcher.Result status = Launcher.weightsync("status", "--target", target);
      assertThat(status.exitCode()).isZero();
      assertThat(status.stdout()).contains("last loaded version '42'").contains("SERVING, version '42'");

      Launcher.Result bad = Launcher.weightsync("push", "--target", target, "--model-dir",
          tmp.resolve("missing").toString(), "--version", "43");
      assertThat(bad.exitCode()).isNotZero();
      assertThat(bad.stderr()).contains("not a directory");
      assertThat(Files.readString(serveLog)).contains("version=42 outcome=loaded");

      serve.destroy(); // SIGTERM
      assertThat(serve.waitFor(60, java.util.concurrent.TimeUnit.SECONDS)).isTrue();
      assertThat(Files.readString(serveLog)).contains("shutting down (NOT_SERVING");
    } finally {
      if (serve != null) {
        serve.destroy();
        serve.waitFor();
      }
      engine.destroy();
      engine.waitFor();
    }
  }

  @Test
  void everyCommandPrintsItsHelp() throws Exception {
    for (String command : List.of("serve", "push", "status", "health", "resume", "convert", "compare", "demo",
        "engine", "bench")) {
      Launcher.Result r = Launcher.weightsync(command, "--help");
      assertThat(r.exitCode()).as(command + ": " + r.stdout() + r.stderr()).isZero();
      assertThat(r.stdout()).as(command).startsWith("Usage: weightsync " + command);
    }
  }

  @Test
  void theDemoRunsOnItsOwnExplainsItsCountsAndLeavesNothingBehind() throws Exception {
    Path tmpdir = Files.createDirectories(tmp.resolve("java-tmp"));
    ProcessBuilder pb = new ProcessBuilder(Launcher.root().resolve("bin/weightsync").toString(),
        "demo", "--layers", "2", "--versions", "1");
    pb.environment().put("WEIGHTSYNC_JAVA_OPTS", "-Djava.io.tmpdir=" + tmpdir);
    Launcher.Result r = Launcher.run(pb, 300);
    assertThat(r.exitCode()).as(r.stdout() + r.stderr()).isZero();
    assertThat(r.stdout()).containsPattern("why (\\d+) out of (\\d+) in: \\d+ weights quantized,"
        + " each with its scales \\(X.weight \\+ X.weight_scale_inv\\), and \\d+ passed through");
    try (var left = Files.list(tmpdir)) {
      assertThat(left.map(p -> p.getFileName().toString())).as("left in java.io.tmpdir").isEmpty();
    }
    assertThat(r.stdout())
        .contains("engine calls, in order: [/pause_generation, /flush_cache, /begin_weight_update,"
            + " /update_weights_from_disk, /end_weight_update, /get_weight_version, /continue_generation]")
        .contains("engine now serves 'step-1'")
        .contains("tensors identical");
  }
}
