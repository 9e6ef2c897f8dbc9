package dev.weightsync.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The Python client (client/python) against the real server, with Debian's python3-grpcio and
 * python3-protobuf (installed by .ci/run). The torch branch runs on the GPU machine, which has
 * PyTorch; here tensors are RawTensor and NumPy arrays.
 */
class PythonClientIT {

  @TempDir Path tmp;

  static final String PY = "/usr/bin/python3";

  @BeforeAll
  static void stubs() throws Exception {
    Launcher.Result probe = Launcher.run(List.of(PY, "-c", "import grpc, google.protobuf, numpy"), 60);
    assumeTrue(probe.exitCode() == 0, "skipped: /usr/bin/python3 lacks grpcio/protobuf/numpy"
        + " (apt-get install python3-grpcio python3-protobuf python3-numpy; .ci/run does): "
        + probe.stderr());
    Launcher.Result gen = Launcher.run(List.of("bash",
        Launcher.root().resolve("client/python/generate_stubs.sh").toString()), 60);
    assertThat(gen.exitCode()).as(gen.stderr()).isZero();
  }

  private static Launcher.Result python(String script, String... args) throws Exception {
    List<String> cmd = new java.util.ArrayList<>(List.of(PY,
        Launcher.root().resolve("client/python").resolve(script).toString()));
    cmd.addAll(List.of(args));
    return Launcher.run(cmd, 120);
  }

  @Test
  void pushesTheGoldenModelAndTheEngineGetsTheGoldenFp8Folder() throws Exception {
    try (SidecarHarness h = new SidecarHarness(tmp, Map.of("format", "fp8-block"))) {
      String target = "127.0.0.1:" + h.sidecar.port();
      Launcher.Result r = python("push_golden.py", target, Launcher.golden("bf16").toString(), "py-1");
      assertThat(r.exitCode()).as(r.stderr()).isZero();
      assertThat(r.stdout()).contains("LOADED py-1");
      assertThat(Launcher.hfcmp(Launcher.golden("fp8"), h.staging.resolve("py-1")).exitCode()).isZero();
    }
  }

  @Test
  void oneVersionOverFourParallelStreamsIsTheGoldenFolder() throws Exception {
    try (SidecarHarness h = new SidecarHarness(tmp, Map.of("format", "fp8-block"))) {
      String target = "127.0.0.1:" + h.sidecar.port();
      Launcher.Result r = python("push_golden.py", "--streams", "4", target,
          Launcher.golden("bf16").toString(), "py-4s");
      assertThat(r.exitCode()).as(r.stderr()).isZero();
      assertThat(r.stdout()).contains("LOADED py-4s");
      assertThat(Launcher.hfcmp(Launcher.golden("fp8"), h.staging.resolve("py-4s")).exitCode())
          .isZero();
      // four parts, so four staged shards
      try (var files = java.nio.file.Files.list(h.staging.resolve("py-4s"))) {
        assertThat(files.filter(f -> f.toString().endsWith(".safetensors")).count()).isEqualTo(4);
      }
    }
  }

  @Test
  void twoPythonTrainersSendOneVersionInTwoParts() throws Exception {
    try (SidecarHarness h = new SidecarHarness(tmp, Map.of("format", "int4-group"))) {
      String target = "127.0.0.1:" + h.sidecar.port();
      String model = Launcher.golden("bf16").toString();
      CompletableFuture<Launcher.Result> a = CompletableFuture.supplyAsync(() -> call(() ->
          python("push_golden.py", target, model, "py-2", "0", "2", "!layers.1.")));
      Launcher.Result b = python("push_golden.py", target, model, "py-2", "1", "2", "layers.1.");
      assertThat(b.exitCode()).as(b.stderr()).isZero();
      assertThat(a.get().exitCode()).as(a.get().stderr()).isZero();
      assertThat(Launcher.hfcmp(Launcher.golden("int4_g128"), h.staging.resolve("py-2")).exitCode())
          .isZero();
    }
  }

  @Test
  void numpyArraysAndANanRefusal() throws Exception {
    try (SidecarHarness h = new SidecarHarness(tmp, Map.of("format", "fp8-block"))) {
      Launcher.Result r = python("tests/test_numpy_push.py", "127.0.0.1:" + h.sidecar.port());
      assertThat(r.exitCode()).as(r.stdout() + r.stderr()).isZero();
      assertThat(r.stdout()).contains("numpy push ok");
    }
  }

  @Test
  void bucketsAndStreamSplitsArePackedAsDocumented() throws Exception {
    Launcher.Result r = python("tests/test_buckets.py");
    assertThat(r.exitCode()).as(r.stdout() + r.stderr()).isZero();
    assertThat(r.stdout()).contains("buckets ok");
  }

  private interface Call<T> {
    T run() throws Exception;
  }

  private static <T> T call(Call<T> c) {
    try {
      return c.run();
    } catch (Exception e) {
      throw new RuntimeException(e);
    }
  }
}
