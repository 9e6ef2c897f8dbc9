package dev.weightsync.it;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/** Runs {@code bin/weightsync} and other commands as real processes. */
final class Launcher {
  private Launcher() {}

  record Result(int exitCode, String stdout, String stderr) {}

  static Path root() {
    return Paths.get(System.getProperty("weightsync.root", "..")).toAbsolutePath().normalize();
  }

  static Path golden(String name) {
    return Paths.get(System.getProperty("weightsync.golden", "../../shared/golden"))
        .resolve(name).toAbsolutePath().normalize();
  }

  static Result weightsync(String... args) throws IOException, InterruptedException {
    List<String> cmd = new ArrayList<>();
    cmd.add(root().resolve("bin/weightsync").toString());
    cmd.addAll(List.of(args));
    return run(cmd, 300);
  }

  static Result run(List<String> cmd, int timeoutSeconds) throws IOException, InterruptedException {
    Path out = Files.createTempFile("ws-out", ".txt");
    Path err = Files.createTempFile("ws-err", ".txt");
    try {
      Process p = new ProcessBuilder(cmd).redirectOutput(out.toFile()).redirectError(err.toFile())
          .start();
      if (!p.waitFor(timeoutSeconds, TimeUnit.SECONDS)) {
        p.destroyForcibly();
        throw new IllegalStateException("timed out: " + cmd);
      }
      return new Result(p.exitValue(), Files.readString(out, StandardCharsets.UTF_8),
          Files.readString(err, StandardCharsets.UTF_8));
    } finally {
      Files.deleteIfExists(out);
      Files.deleteIfExists(err);
    }
  }

  /** Waits until something listens on {@code port}; fails with the process's log if it exits. */
  static void awaitPort(int port, Process p, Path log) throws Exception {
    for (int i = 0; i < 300; i++) {
      if (!p.isAlive()) {
        throw new AssertionError("process exited: " + Files.readString(log));
      }
      try {
        new java.net.Socket("127.0.0.1", port).close();
        return;
      } catch (IOException e) {
        Thread.sleep(100);
      }
    }
    throw new AssertionError("nothing listens on " + port + ": " + Files.readString(log));
  }

  /** A python3 that runs the shared stdlib-only tools (hfcmp.py). */
  static String python() {
    return Files.isExecutable(Paths.get("/usr/bin/python3")) ? "/usr/bin/python3" : "python3";
  }

  static Result hfcmp(Path expected, Path actual) throws IOException, InterruptedException {
    Path tool = golden("..").resolve("tools/hfcmp.py").normalize();
    return run(List.of(python(), tool.toString(), expected.toString(), actual.toString()), 120);
  }
}
