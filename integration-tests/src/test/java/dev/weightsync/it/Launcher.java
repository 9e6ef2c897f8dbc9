package dev.weightsync.it;

import dev.weightsync.core.checkpoint.CheckpointComparison;
import dev.weightsync.core.checkpoint.CheckpointFolder;
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

  /** A folder of the repository's golden fixtures (testdata/golden): bf16, fp8, int4_g128... */
  static Path golden(String name) {
    return Paths.get(System.getProperty("weightsync.fixtures", "../testdata/golden"))
        .resolve(name).toAbsolutePath().normalize();
  }

  /** Every golden set: the repository's, then ../shared/golden where it exists (an extra check). */
  static List<Path> goldenRoots() {
    List<Path> roots = new ArrayList<>(List.of(golden(".")));
    Path shared = Paths.get(System.getProperty("weightsync.sharedGolden", "../../shared/golden"))
        .toAbsolutePath().normalize();
    if (Files.isDirectory(shared.resolve("bf16"))) {
      roots.add(shared);
    }
    return roots;
  }

  /** Tensor count and total tensor bytes of a golden folder (what a push of it reports). */
  record Counts(int tensors, long bytes) {}

  static Counts counts(Path folder) throws IOException {
    try (CheckpointFolder f = CheckpointFolder.open(folder)) {
      return new Counts(f.tensors().size(),
          f.tensors().stream().mapToLong(t -> t.byteLength()).sum());
    }
  }

  static Result weightsync(String... args) throws IOException, InterruptedException {
    List<String> cmd = new ArrayList<>();
    cmd.add(root().resolve("bin/weightsync").toString());
    cmd.addAll(List.of(args));
    return run(cmd, 300);
  }

  static Result run(List<String> cmd, int timeoutSeconds) throws IOException, InterruptedException {
    return run(new ProcessBuilder(cmd), timeoutSeconds);
  }

  /** Runs {@code pb} to its end (killed after {@code timeoutSeconds}), collecting its output. */
  static Result run(ProcessBuilder pb, int timeoutSeconds) throws IOException, InterruptedException {
    Path out = Files.createTempFile("ws-out", ".txt");
    Path err = Files.createTempFile("ws-err", ".txt");
    List<String> cmd = pb.command();
    try {
      Process p = start(pb.redirectOutput(out.toFile()).redirectError(err.toFile()));
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

  /** Starts a process that the test's end (or the JVM's) stops if the test does not. */
  static Process start(ProcessBuilder pb) throws IOException {
    return ProcessReaper.track(pb.start());
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

  /**
   * {@code weightsync compare EXPECTED ACTUAL}, in this JVM: exit code 0 when identical, 1 when
   * not, with the differences on stdout (ConvertCommandIT runs the command itself).
   */
  static Result compare(Path expected, Path actual) throws IOException {
    CheckpointComparison.Result r = CheckpointComparison.compare(expected, actual);
    String report = String.join("\n", r.differences()) + "\n" + r.tensorsCompared()
        + " tensors compared, " + r.differences().size() + " differ\n";
    return new Result(r.identical() ? 0 : 1, report, "");
  }
}
