package dev.weightsync.it;

import static org.assertj.core.api.Assertions.assertThat;

import dev.weightsync.core.safetensors.SafetensorsFile;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * {@code bin/weightsync convert} and {@code compare} as a user runs them, on the repository's
 * golden fixtures and, where it exists, on ../shared/golden too.
 */
class ConvertCommandIT {

  @TempDir Path tmp;

  static List<Arguments> goldenCases() {
    List<Arguments> out = new ArrayList<>();
    for (Path root : Launcher.goldenRoots()) {
      out.add(Arguments.of(root, "fp8", "fp8-block", ""));
      out.add(Arguments.of(root, "fp8_ue8m0", "fp8-block-ue8m0", ""));
      out.add(Arguments.of(root, "int4_g128", "int4-group", ""));
      out.add(Arguments.of(root, "int4_g32", "int4-group", "--group-size=32"));
    }
    return out;
  }

  @ParameterizedTest(name = "convert --format {2} {3} equals {0}/{1}")
  @MethodSource("goldenCases")
  void reproducesTheGoldenFolders(Path root, String golden, String format, String extra)
      throws Exception {
    Path out = tmp.resolve(golden);
    var args = new ArrayList<>(List.of("convert",
        "--input-dir", root.resolve("bf16").toString(), "--output-dir", out.toString(),
        "--format", format, "--threads", "2"));
    if (!extra.isEmpty()) {
      args.add(extra);
    }
    Launcher.Result r = Launcher.weightsync(args.toArray(String[]::new));
    assertThat(r.exitCode()).as(r.stderr()).isZero();
    assertThat(r.stderr())
        .contains("converted " + Launcher.counts(root.resolve("bf16")).tensors() + " tensors");
    Launcher.Result cmp = Launcher.weightsync("compare", root.resolve(golden).toString(),
        out.toString());
    assertThat(cmp.exitCode()).as(cmp.stdout() + cmp.stderr()).isZero();
    assertThat(cmp.stdout()).endsWith(" tensors compared, 0 differ\n");
  }

  @Test
  void compareSaysWhatDiffersAndExitsOneOrTwo() throws Exception {
    Launcher.Result differ = Launcher.weightsync("compare", Launcher.golden("fp8").toString(),
        Launcher.golden("fp8_ue8m0").toString());
    assertThat(differ.exitCode()).isEqualTo(1);
    assertThat(differ.stdout())
        .contains("model.layers.0.mlp.experts.0.down_proj.weight_scale_inv: 2 of 2 elements differ")
        .contains("after dequantization")
        .contains("... and 1 more") // the 21st: quantization_config (scale_fmt); 20 are shown
        .containsPattern("\\d+ tensors compared, [1-9]\\d* differ\n$");

    Launcher.Result unreadable = Launcher.weightsync("compare", Launcher.golden("fp8").toString(),
        tmp.resolve("absent").toString());
    assertThat(unreadable.exitCode()).isEqualTo(2);
    assertThat(unreadable.stderr()).contains("absent").contains("not a directory");

    Launcher.Result usage = Launcher.weightsync("compare", Launcher.golden("fp8").toString());
    assertThat(usage.exitCode()).isEqualTo(2);
    assertThat(usage.stderr()).contains("ACTUAL");
  }

  @Test
  void theEngineConfigDecidesTheFormatAndDisagreementIsAnError() throws Exception {
    Path out = tmp.resolve("from-config");
    Path config = Launcher.golden("int4_g32").resolve("config.json");
    Launcher.Result r = Launcher.weightsync("convert", "--input-dir",
        Launcher.golden("bf16").toString(), "--output-dir", out.toString(),
        "--quantization-config", config.toString());
    assertThat(r.exitCode()).as(r.stderr()).isZero();
    assertThat(Launcher.compare(Launcher.golden("int4_g32"), out).exitCode()).isZero();

    Launcher.Result bad = Launcher.weightsync("convert", "--input-dir",
        Launcher.golden("bf16").toString(), "--output-dir", tmp.resolve("x").toString(),
        "--quantization-config", config.toString(), "--format", "fp8-block");
    assertThat(bad.exitCode()).isNotZero();
    assertThat(bad.stderr()).contains("disagrees");
  }

  @Test
  void aNonEmptyOutputNeedsForceAndForceReplacesIt() throws Exception {
    Path out = Files.createDirectories(tmp.resolve("out"));
    Files.writeString(out.resolve("old.txt"), "old");
    String[] args = {"convert", "--input-dir", Launcher.golden("bf16").toString(),
        "--output-dir", out.toString(), "--format", "fp8-block"};
    Launcher.Result refused = Launcher.weightsync(args);
    assertThat(refused.exitCode()).isNotZero();
    assertThat(refused.stderr()).contains("not empty").contains("--force");
    assertThat(out.resolve("old.txt")).exists();

    String[] forced = java.util.Arrays.copyOf(args, args.length + 1);
    forced[args.length] = "--force";
    assertThat(Launcher.weightsync(forced).exitCode()).isZero();
    assertThat(out.resolve("old.txt")).doesNotExist();
    assertThat(Launcher.compare(Launcher.golden("fp8"), out).exitCode()).isZero();
  }

  @Test
  void aNonFiniteWeightStopsTheJobNamingTensorAndElementAndLeavesNothing() throws Exception {
    Path in = tmp.resolve("nan-model");
    Files.createDirectories(in);
    try (Stream<Path> files = Files.list(Launcher.golden("bf16"))) {
      for (Path p : files.toList()) {
        Files.copy(p, in.resolve(p.getFileName()));
        in.resolve(p.getFileName()).toFile().setWritable(true);
      }
    }
    // a BF16 NaN at element 1234 of model.layers.1.mlp.down_proj.weight (shard 2)
    Path shard = in.resolve("model-00002-of-00002.safetensors");
    long begin;
    try (SafetensorsFile f = SafetensorsFile.open(shard)) {
      begin = f.entry("model.layers.1.mlp.down_proj.weight").begin();
    }
    try (FileChannel ch = FileChannel.open(shard, StandardOpenOption.READ, StandardOpenOption.WRITE)) {
      ByteBuffer len = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
      ch.read(len, 0);
      long dataStart = 8 + len.flip().getLong();
      ch.write(ByteBuffer.allocate(2).order(ByteOrder.LITTLE_ENDIAN).putShort((short) 0x7FC0).flip(),
          dataStart + begin + 2 * 1234);
    }
    Path out = tmp.resolve("never");
    Launcher.Result r = Launcher.weightsync("convert", "--input-dir", in.toString(),
        "--output-dir", out.toString(), "--format", "fp8-block");
    assertThat(r.exitCode()).isNotZero();
    assertThat(r.stderr()).contains("model.layers.1.mlp.down_proj.weight").contains("element 1234");
    assertThat(out).doesNotExist();
    try (Stream<Path> left = Files.list(tmp)) {
      assertThat(left.map(p -> p.getFileName().toString())).noneMatch(n -> n.contains("partial"));
    }
  }

  @Test
  void lookingForAGpuLeavesNothingInTheTemporaryFolder() throws Exception {
    // JCuda unpacks its native library into java.io.tmpdir; on a machine without a GPU it then
    // fails to load, and used to stay there
    Path tmpdir = Files.createDirectories(tmp.resolve("java-tmp"));
    ProcessBuilder pb = new ProcessBuilder(Launcher.root().resolve("bin/weightsync").toString(),
        "convert", "--input-dir", Launcher.golden("bf16").toString(), "--output-dir",
        tmp.resolve("out").toString(), "--format", "fp8-block", "--device", "auto");
    pb.environment().put("WEIGHTSYNC_JAVA_OPTS", "-Djava.io.tmpdir=" + tmpdir);
    Launcher.Result r = Launcher.run(pb, 120);
    assertThat(r.exitCode()).as(r.stderr()).isZero();
    try (Stream<Path> left = Files.list(tmpdir)) {
      assertThat(left.map(p -> p.getFileName().toString())).isEmpty();
    }
  }

  @Test
  void missingJarsAreExplained() throws Exception {
    Launcher.Result r = Launcher.weightsync("--help");
    assertThat(r.exitCode()).isZero();
    assertThat(r.stdout()).contains("convert").contains("bench");
  }
}
