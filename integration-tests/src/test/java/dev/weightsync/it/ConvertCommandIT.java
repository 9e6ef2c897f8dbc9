package dev.weightsync.it;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** {@code bin/weightsync convert} as a user runs it, checked with the shared hfcmp.py. */
class ConvertCommandIT {

  @TempDir Path tmp;

  @ParameterizedTest(name = "convert --format {1} {2} equals golden/{0}")
  @CsvSource({
      "fp8, fp8-block, ''",
      "fp8_ue8m0, fp8-block-ue8m0, ''",
      "int4_g128, int4-group, ''",
      "int4_g32, int4-group, --group-size=32"})
  void reproducesTheGoldenFolders(String golden, String format, String extra) throws Exception {
    Path out = tmp.resolve(golden);
    var args = new java.util.ArrayList<>(java.util.List.of("convert",
        "--input-dir", Launcher.golden("bf16").toString(), "--output-dir", out.toString(),
        "--format", format, "--threads", "2"));
    if (!extra.isEmpty()) {
      args.add(extra);
    }
    Launcher.Result r = Launcher.weightsync(args.toArray(String[]::new));
    assertThat(r.exitCode()).as(r.stderr()).isZero();
    assertThat(r.stderr()).contains("converted 35 tensors");
    Launcher.Result cmp = Launcher.hfcmp(Launcher.golden(golden), out);
    assertThat(cmp.exitCode()).as(cmp.stdout() + cmp.stderr()).isZero();
  }

  @Test
  void theEngineConfigDecidesTheFormatAndDisagreementIsAnError() throws Exception {
    Path out = tmp.resolve("from-config");
    Path config = Launcher.golden("int4_g32").resolve("config.json");
    Launcher.Result r = Launcher.weightsync("convert", "--input-dir",
        Launcher.golden("bf16").toString(), "--output-dir", out.toString(),
        "--quantization-config", config.toString());
    assertThat(r.exitCode()).as(r.stderr()).isZero();
    assertThat(Launcher.hfcmp(Launcher.golden("int4_g32"), out).exitCode()).isZero();

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
    assertThat(Launcher.hfcmp(Launcher.golden("fp8"), out).exitCode()).isZero();
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
    // model.layers.1.mlp.up_proj.weight starts at data offset 819712 of shard 2; element 1234.
    Path shard = in.resolve("model-00002-of-00002.safetensors");
    try (FileChannel ch = FileChannel.open(shard, StandardOpenOption.READ, StandardOpenOption.WRITE)) {
      ByteBuffer len = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
      ch.read(len, 0);
      long dataStart = 8 + len.flip().getLong();
      ch.write(ByteBuffer.allocate(2).order(ByteOrder.LITTLE_ENDIAN).putShort((short) 0x7FC0).flip(),
          dataStart + 819712 + 2 * 1234);
    }
    Path out = tmp.resolve("never");
    Launcher.Result r = Launcher.weightsync("convert", "--input-dir", in.toString(),
        "--output-dir", out.toString(), "--format", "fp8-block");
    assertThat(r.exitCode()).isNotZero();
    assertThat(r.stderr()).contains("model.layers.1.mlp.up_proj.weight").contains("element 1234");
    assertThat(out).doesNotExist();
    try (Stream<Path> left = Files.list(tmp)) {
      assertThat(left.map(p -> p.getFileName().toString())).noneMatch(n -> n.contains("partial"));
    }
  }

  @Test
  void missingJarsAreExplained() throws Exception {
    Launcher.Result r = Launcher.weightsync("--help");
    assertThat(r.exitCode()).isZero();
    assertThat(r.stdout()).contains("convert").contains("bench");
  }
}
