package dev.weightsync.it;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The Python client (client/python) against the real server, with Debian's python3-grpcio and
 * python3-protobuf (installed by .ci/run): the scripts in client/python/e2e run from the source
 * tree, and the package installed with pip into a fresh virtual environment as a user installs
 * it. The torch branch runs on the GPU machine, which has PyTorch; here tensors are RawTensor
 * and NumPy arrays.
 */
class PythonClientIT {

  @TempDir Path tmp;

  static final String PY = "/usr/bin/python3";

  /** Skips (or, with -Dweightsync.requireTools=python, fails) when the Python side is missing. */
  @BeforeAll
  static void stubs() throws Exception {
    Launcher.Result probe = Launcher.run(List.of(PY, "-c", "import grpc, google.protobuf, numpy"), 60);
    Tools.require(Tools.PYTHON, probe.exitCode() == 0, "/usr/bin/python3 lacks grpcio/protobuf/numpy"
        + " (apt-get install python3-grpcio python3-protobuf python3-numpy; .ci/run does): "
        + probe.stderr());
  }

  /** Whether the Python side is there; fails instead of answering no when it is required. */
  static boolean available() throws Exception {
    boolean ok = Launcher.run(List.of(PY, "-c", "import grpc, google.protobuf, numpy"), 60)
        .exitCode() == 0;
    if (!ok && Tools.required().contains(Tools.PYTHON)) {
      throw new AssertionError("/usr/bin/python3 lacks grpcio/protobuf/numpy, and"
          + " -Dweightsync.requireTools names python");
    }
    return ok;
  }

  private static Launcher.Result python(String script, String... args) throws Exception {
    List<String> cmd = new java.util.ArrayList<>(List.of(PY,
        Launcher.root().resolve("client/python").resolve(script).toString()));
    cmd.addAll(List.of(args));
    return Launcher.run(cmd, 120);
  }

  @Test
  void theReadmesPythonSetupInstallsAPackageThatPushes() throws Exception {
    Launcher.Result venvProbe = Launcher.run(List.of(PY, "-c", "import ensurepip, setuptools"), 30);
    Tools.require(Tools.PYTHON, venvProbe.exitCode() == 0, "python3-venv or python3-setuptools"
        + " is missing (apt-get install python3-venv python3-setuptools; .ci/run does)");
    Path venv = tmp.resolve("venv");
    // the README's commands, word for word but for the folder names
    Launcher.Result mk = Launcher.run(List.of(PY, "-m", "venv", "--system-site-packages",
        venv.toString()), 120);
    assertThat(mk.exitCode()).as(mk.stdout() + mk.stderr()).isZero();
    // from a copy: setuptools builds in the source folder (build/, *.egg-info), not in the checkout
    Path source = tmp.resolve("client-python");
    Launcher.Result copy = Launcher.run(List.of("cp", "-r",
        Launcher.root().resolve("client/python").toString(), source.toString()), 60);
    assertThat(copy.exitCode()).as(copy.stderr()).isZero();
    Launcher.Result install = Launcher.run(List.of(venv.resolve("bin/pip").toString(), "install",
        "--no-build-isolation", "--no-index", source.toString()), 300);
    assertThat(install.exitCode()).as(install.stdout() + install.stderr()).isZero();
    try (SidecarHarness h = new SidecarHarness(tmp.resolve("sidecar"), Map.of("format", "fp8-block"))) {
      // run from an empty folder with no PYTHONPATH: the import comes from the venv alone
      Path script = tmp.resolve("push.py");
      Files.writeString(script, String.join("\n",
          "import numpy as np, weightsync_client as ws",
          "print('from', ws.__file__)",
          "w = (np.arange(256 * 128, dtype=np.float32).reshape(256, 128) - 16384) / 4096",
          "r = ws.push([('model.layers.0.mlp.down_proj.weight', w)], version='venv-1',",
          "            target='127.0.0.1:" + h.sidecar.port() + "')",
          "print(ws.pb.EngineOutcome.Name(r.engines[0].outcome), r.tensors_out)", ""));
      ProcessBuilder pb = new ProcessBuilder(venv.resolve("bin/python").toString(), script.toString())
          .directory(tmp.toFile());
      pb.environment().remove("PYTHONPATH");
      Launcher.Result r = Launcher.run(pb, 120);
      assertThat(r.exitCode()).as(r.stdout() + r.stderr()).isZero();
      assertThat(r.stdout()).contains("from " + venv.toAbsolutePath()).contains("LOADED 2");
    }
  }

  @Test
  void pushesTheGoldenModelAndTheEngineGetsTheGoldenFp8Folder() throws Exception {
    try (SidecarHarness h = new SidecarHarness(tmp, Map.of("format", "fp8-block"))) {
      String target = "127.0.0.1:" + h.sidecar.port();
      Launcher.Result r = python("e2e/push_golden.py", target, Launcher.golden("bf16").toString(), "py-1");
      assertThat(r.exitCode()).as(r.stderr()).isZero();
      assertThat(r.stdout()).contains("LOADED py-1");
      assertThat(Launcher.compare(Launcher.golden("fp8"), h.staging.resolve("py-1")).exitCode()).isZero();
    }
  }

  @Test
  void oneVersionOverFourParallelStreamsIsTheGoldenFolder() throws Exception {
    try (SidecarHarness h = new SidecarHarness(tmp, Map.of("format", "fp8-block"))) {
      String target = "127.0.0.1:" + h.sidecar.port();
      Launcher.Result r = python("e2e/push_golden.py", "--streams", "4", target,
          Launcher.golden("bf16").toString(), "py-4s");
      assertThat(r.exitCode()).as(r.stderr()).isZero();
      assertThat(r.stdout()).contains("LOADED py-4s");
      assertThat(Launcher.compare(Launcher.golden("fp8"), h.staging.resolve("py-4s")).exitCode())
          .isZero();
      // four parts, so four staged shards
      try (var files = java.nio.file.Files.list(h.staging.resolve("py-4s"))) {
        assertThat(files.filter(f -> f.toString().endsWith(".safetensors")).count()).isEqualTo(4);
      }
    }
  }

  /** The trainer on the sidecar's node reaches it by its Unix socket. */
  @Test
  void pushesOverAUnixSocket() throws Exception {
    java.nio.file.Path socket = tmp.resolve("grpc.sock");
    try (SidecarHarness h = new SidecarHarness(tmp, Map.of("format", "fp8-block", "listen",
        java.util.List.of("unix://" + socket)))) {
      Launcher.Result r = python("e2e/push_golden.py", "--streams", "2", "unix://" + socket,
          Launcher.golden("bf16").toString(), "py-uds");
      assertThat(r.exitCode()).as(r.stderr()).isZero();
      assertThat(r.stdout()).contains("LOADED py-uds");
      assertThat(Launcher.compare(Launcher.golden("fp8"), h.staging.resolve("py-uds")).exitCode())
          .isZero();
    }
  }

  /** Without a crc32c module the chunks carry zlib's CRC-32, which the sidecar checks instead. */
  @Test
  void withoutACrc32cModuleZlibsCrc32IsDeclaredAndChecked() throws Exception {
    try (SidecarHarness h = new SidecarHarness(tmp, Map.of("format", "fp8-block"))) {
      String target = "127.0.0.1:" + h.sidecar.port();
      Launcher.Result r = python("e2e/push_golden.py", "--without-crc32c", "--streams", "2",
          target, Launcher.golden("bf16").toString(), "py-zlib");
      assertThat(r.exitCode()).as(r.stderr()).isZero();
      assertThat(r.stdout()).contains("checksum crc32").contains("LOADED py-zlib");
      assertThat(Launcher.compare(Launcher.golden("fp8"), h.staging.resolve("py-zlib")).exitCode())
          .isZero();
    }
  }

  @Test
  void twoPythonTrainersSendOneVersionInTwoParts() throws Exception {
    try (SidecarHarness h = new SidecarHarness(tmp, Map.of("format", "int4-group"))) {
      String target = "127.0.0.1:" + h.sidecar.port();
      String model = Launcher.golden("bf16").toString();
      CompletableFuture<Launcher.Result> a = CompletableFuture.supplyAsync(() -> call(() ->
          python("e2e/push_golden.py", target, model, "py-2", "0", "2", "!layers.1.")));
      Launcher.Result b = python("e2e/push_golden.py", target, model, "py-2", "1", "2", "layers.1.");
      assertThat(b.exitCode()).as(b.stderr()).isZero();
      assertThat(a.get().exitCode()).as(a.get().stderr()).isZero();
      assertThat(Launcher.compare(Launcher.golden("int4_g128"), h.staging.resolve("py-2")).exitCode())
          .isZero();
    }
  }

  @Test
  void numpyArraysAndANanRefusal() throws Exception {
    try (SidecarHarness h = new SidecarHarness(tmp, Map.of("format", "fp8-block"))) {
      Launcher.Result r = python("e2e/push_numpy.py", "127.0.0.1:" + h.sidecar.port());
      assertThat(r.exitCode()).as(r.stdout() + r.stderr()).isZero();
      assertThat(r.stdout()).contains("numpy push ok");
    }
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
