package dev.weightsync.it;

import static dev.weightsync.it.RawStream.chunk;
import static dev.weightsync.it.RawStream.commit;
import static dev.weightsync.it.RawStream.header;
import static org.assertj.core.api.Assertions.assertThat;

import io.grpc.Status;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * What a person sees when they get something wrong: one line naming the thing, no stack trace,
 * exit 2 for usage errors; and input that would destroy or corrupt data refused before any harm.
 */
class UsageAndRefusalsIT {

  @TempDir Path tmp;

  private static void assertOneLineError(Launcher.Result r, int exit, String... fragments) {
    assertThat(r.exitCode()).as(r.stdout() + r.stderr()).isEqualTo(exit);
    assertThat(r.stderr().lines().filter(l -> l.startsWith("error: ")))
        .as(r.stderr()).singleElement().asString().contains(fragments);
    assertThat(r.stderr()).doesNotContain("\tat ").doesNotContain("Exception");
  }

  @Test
  void usageErrorsExitTwoAndNameTheProblem() throws Exception {
    Launcher.Result none = Launcher.weightsync();
    assertThat(none.exitCode()).isEqualTo(2);
    assertThat(none.stderr()).contains("Usage: weightsync").contains("no command given");

    Launcher.Result version = Launcher.weightsync("--version");
    assertThat(version.exitCode()).isZero();
    assertThat(version.stdout()).matches("weightsync \\d+\\.\\d+\\.\\d+\\S*\\n");
    assertThat(Launcher.weightsync("compare", "-V").stdout()).isEqualTo(version.stdout());

    String model = Launcher.golden("bf16").toString();
    assertOneLineError(Launcher.weightsync("push", "--target", "127.0.0.1:1", "--model-dir", model,
        "--version", "1", "--parts", "0"), 2, "--parts must be at least 1");
    assertOneLineError(Launcher.weightsync("push", "--target", "127.0.0.1:1", "--model-dir", model,
        "--version", "1", "--part", "2", "--parts", "2"), 2, "--part must be from 0 to 1");
    assertOneLineError(Launcher.weightsync("push", "--target", "127.0.0.1:1", "--model-dir", model,
        "--version", "1", "--streams", "0"), 2, "--streams must be at least 1");
    assertOneLineError(Launcher.weightsync("serve", "--check-config", "--max-tensor-bytes", "5XB"),
        2, "max-tensor-bytes", "5XB");
    ProcessBuilder env = new ProcessBuilder(Launcher.root().resolve("bin/weightsync").toString(),
        "serve", "--check-config");
    env.environment().put("WEIGHTSYNC_PORT", "abc");
    assertOneLineError(Launcher.run(env, 60), 2, "WEIGHTSYNC_PORT=abc", "port");
  }

  @Test
  void aPushThatCannotReachItsSidecarSaysSoInOneLine() throws Exception {
    int closed;
    try (ServerSocket s = new ServerSocket(0)) {
      closed = s.getLocalPort();
    }
    String model = Launcher.golden("bf16").toString();
    assertOneLineError(Launcher.weightsync("push", "--target", "127.0.0.1:" + closed,
        "--model-dir", model, "--version", "1"), 1,
        "nothing is listening at 127.0.0.1:" + closed + " — is 'weightsync serve' running?");
    assertOneLineError(Launcher.weightsync("status", "--target", "127.0.0.1:" + closed), 1,
        "nothing is listening at 127.0.0.1:" + closed);
    assertOneLineError(Launcher.weightsync("push", "--target", "no-such-host.invalid:50051",
        "--model-dir", model, "--version", "1"), 1, "unknown host", "no-such-host.invalid");
  }

  @Test
  void serveWithoutAnEngineSaysSoAtStart() throws Exception {
    Path log = tmp.resolve("serve.log");
    Process p = Launcher.start(new ProcessBuilder(Launcher.root().resolve("bin/weightsync").toString(),
        "serve", "--port", "0", "--metrics-port", "-1", "--device", "cpu", "--staging-dir",
        tmp.resolve("staging").toString()).redirectErrorStream(true).redirectOutput(log.toFile()));
    try {
      long deadline = System.nanoTime() + 60_000_000_000L;
      while (!Files.readString(log).contains("weightsync: serving") && p.isAlive()
          && System.nanoTime() < deadline) {
        Thread.sleep(50);
      }
      assertThat(Files.readString(log)).contains("warning: no engine configured (--sglang-url, --vllm-url)")
          .contains("weightsync: serving")
          .contains("(127.0.0.1:")
          .contains("callers: not authenticated (loopback and Unix sockets only)");
      java.util.regex.Matcher m = java.util.regex.Pattern.compile("serving on port (\\d+)")
          .matcher(Files.readString(log));
      assertThat(m.find()).isTrue();
      Launcher.Result status = Launcher.weightsync("status", "--target", "127.0.0.1:" + m.group(1));
      assertThat(status.stdout()).contains("no engine configured (--sglang-url, --vllm-url)");
    } finally {
      p.destroy();
    }
  }

  @Test
  void aPortInUseOrAnUnusableStagingFolderIsNamed() throws Exception {
    try (ServerSocket taken = new ServerSocket(0)) {
      String port = String.valueOf(taken.getLocalPort());
      String staging = tmp.resolve("staging").toString();
      assertOneLineError(Launcher.weightsync("serve", "--port", port, "--metrics-port", "-1",
          "--device", "cpu", "--staging-dir", staging), 1,
          "the gRPC port " + port + " (--port) is already in use");
      assertOneLineError(Launcher.weightsync("serve", "--port", "0", "--metrics-port", port,
          "--device", "cpu", "--staging-dir", staging), 1,
          "the metrics port " + port + " (--metrics-port; -1 disables it) is already in use");
      assertOneLineError(Launcher.weightsync("engine", "--port", port), 1,
          "port " + port + " is already in use (weightsync engine --port)");
    }
    Path file = Files.writeString(tmp.resolve("a-file"), "x");
    assertOneLineError(Launcher.weightsync("serve", "--port", "0", "--metrics-port", "-1",
        "--device", "cpu", "--staging-dir", file.resolve("staging").toString()), 1,
        "staging folder " + file.resolve("staging") + " is unusable");
  }

  @Test
  void aFormatAnEngineCannotServeIsRefusedByCheckConfigAndAtStartNamingTheEngine()
      throws Exception {
    String staging = tmp.resolve("staging").toString();
    assertOneLineError(Launcher.weightsync("serve", "--check-config", "--staging-dir", staging,
        "--format", "int4-group", "--group-size", "256", "--vllm-url", "http://127.0.0.1:1"), 2,
        "vLLM cannot serve int4-group with group size 256", "32, 64 or 128",
        "vllm-url http://127.0.0.1:1");

    // the served model's own config asks for groups of 16: refused at start, before listening
    String g32 = Files.readString(Launcher.golden("int4_g32").resolve("config.json"));
    assertThat(g32).contains("\"group_size\": 32");
    Path g16 = Files.writeString(tmp.resolve("config.json"),
        g32.replace("\"group_size\": 32", "\"group_size\": 16"));
    Launcher.Result start = Launcher.weightsync("serve", "--port", "0", "--metrics-port", "-1",
        "--device", "cpu", "--staging-dir", staging, "--quantization-config", g16.toString(),
        "--sglang-url", "http://127.0.0.1:1");
    assertOneLineError(start, 2, "SGLang cannot serve int4-group with group size 16", "Marlin",
        "sglang-url http://127.0.0.1:1");
    assertThat(start.stderr()).doesNotContain("serving on port");

    Launcher.Result ok = Launcher.weightsync("serve", "--check-config", "--staging-dir", staging,
        "--format", "int4-group", "--group-size", "64", "--vllm-url", "http://127.0.0.1:1",
        "--sglang-url", "http://127.0.0.1:2");
    assertThat(ok.exitCode()).as(ok.stderr()).isZero();
    assertThat(ok.stdout()).contains("stages int4-group with group size 64");
    // with no engine to serve it (a trainer-side or staging-only sidecar) any group size stages
    Launcher.Result noEngine = Launcher.weightsync("serve", "--check-config", "--staging-dir",
        staging, "--format", "int4-group", "--group-size", "256");
    assertThat(noEngine.exitCode()).as(noEngine.stderr()).isZero();
  }

  @Test
  void aFileThatIsNotSafetensorsIsCalledThat() throws Exception {
    Path dir = Files.createDirectories(tmp.resolve("junk"));
    Files.writeString(dir.resolve("model.safetensors"), "{\"hello\": 1}");
    assertOneLineError(Launcher.weightsync("convert", "--input-dir", dir.toString(),
        "--output-dir", tmp.resolve("out").toString(), "--format", "fp8-block"), 1,
        "model.safetensors: not a safetensors file: header length");
  }

  @Test
  void convertNeverWritesOverItsInput() throws Exception {
    Path in = copyOfGolden("bf16", tmp.resolve("model"));
    for (String out : List.of(in.toString(), in.resolve("fp8").toString(), tmp.toString(),
        in.resolve("../model/.").toString())) {
      for (boolean force : new boolean[] {false, true}) {
        List<String> args = new java.util.ArrayList<>(List.of("convert", "--input-dir",
            in.toString(), "--output-dir", out, "--format", "fp8-block"));
        if (force) {
          args.add("--force");
        }
        Launcher.Result r = Launcher.weightsync(args.toArray(String[]::new));
        assertOneLineError(r, 1, "refused, since writing it would destroy the input");
        assertThat(Launcher.compare(Launcher.golden("bf16"), in).exitCode())
            .as("input intact after " + args).isZero();
      }
    }
  }

  @Test
  void alreadyQuantizedInputIsRefusedByConvertPushAndTheSidecar() throws Exception {
    // a folder with a quantization_config
    assertOneLineError(Launcher.weightsync("convert", "--input-dir",
        Launcher.golden("fp8").toString(), "--output-dir", tmp.resolve("again").toString(),
        "--format", "fp8-block"), 1, "quantization_config", "already quantized");
    assertThat(tmp.resolve("again")).doesNotExist();
    assertOneLineError(Launcher.weightsync("push", "--target", "127.0.0.1:1", "--model-dir",
        Launcher.golden("int4_g128").toString(), "--version", "1"), 1, "already quantized");

    // the same tensors without the config: the F8_E4M3 tensor is named
    Path noConfig = copyOfGolden("fp8", tmp.resolve("fp8-no-config"));
    Files.delete(noConfig.resolve("config.json"));
    assertOneLineError(Launcher.weightsync("convert", "--input-dir", noConfig.toString(),
        "--output-dir", tmp.resolve("again2").toString(), "--format", "int4-group"), 1,
        "tensor model.layers.0.mlp.experts.0.down_proj.weight", "already quantized");

    try (SidecarHarness h = new SidecarHarness(tmp.resolve("sidecar"), Map.of("format", "fp8-block"));
        RawStream raw = new RawStream(h.sidecar.port())) {
      byte[] fp8 = new byte[128 * 128];
      Status s = raw.send(List.of(header("q1", 0, 1),
          chunk("model.layers.0.mlp.up_proj.weight", "F8_E4M3", new long[] {128, 128}, 0, fp8),
          commit(1, fp8.length)), true, false);
      assertThat(s.getCode()).isEqualTo(Status.Code.INVALID_ARGUMENT);
      assertThat(s.getDescription()).contains("model.layers.0.mlp.up_proj.weight", "F8_E4M3");
      byte[] scale = new byte[4];
      Status named = raw.send(List.of(header("q2", 0, 1),
          chunk("model.layers.0.mlp.up_proj.weight_scale_inv", "F32", new long[] {1, 1}, 0, scale),
          commit(1, 4)), true, false);
      assertThat(named.getCode()).isEqualTo(Status.Code.INVALID_ARGUMENT);
      assertThat(named.getDescription()).contains("weight_scale_inv");
      assertThat(h.stagingEntries()).noneMatch(n -> n.startsWith("q"));
      assertThat(h.engine.routes()).isEmpty();
    }
  }

  private static Path copyOfGolden(String name, Path dst) throws Exception {
    Files.createDirectories(dst);
    try (Stream<Path> files = Files.list(Launcher.golden(name))) {
      for (Path f : files.toList()) {
        Files.copy(f, dst.resolve(f.getFileName()));
      }
    }
    return dst;
  }
}
