package dev.weightsync.core.checkpoint;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.weightsync.core.Golden;
import dev.weightsync.core.quant.Bf16;
import dev.weightsync.core.quant.E4m3;
import dev.weightsync.core.safetensors.SafetensorsFile;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code weightsync compare}'s judgement, on copies of the fixtures with planted differences. */
class CheckpointComparisonTest {

  @TempDir Path tmp;

  @Test
  void aFolderEqualsItsCopy() throws IOException {
    Path copy = copy("fp8");
    CheckpointComparison.Result r = CheckpointComparison.compare(Golden.dir("fp8"), copy);
    assertThat(r.differences()).isEmpty();
    assertThat(r.identical()).isTrue();
    try (CheckpointFolder f = CheckpointFolder.open(copy)) {
      assertThat(r.tensorsCompared()).isEqualTo(f.tensors().size());
    }
  }

  @Test
  void oneFp8CodeIsReportedWithItsDequantizedDifference() throws IOException {
    Path copy = copy("fp8");
    String name = "model.layers.0.mlp.experts.0.down_proj.weight";
    long element = 200 * 256 / 2 + 7; // row 100 (block row 0), column 7 (block column 0)
    byte old = read(copy, name, element, 1).get();
    byte changed = (byte) (old ^ 0x01);
    write(copy, name, element, new byte[] {changed});
    float scale = read(copy, name + "_scale_inv", 0, 4).getFloat();
    double want = Math.abs((E4m3.decode(old) - E4m3.decode(changed)) * (double) scale);

    CheckpointComparison.Result r = CheckpointComparison.compare(Golden.dir("fp8"), copy);
    assertThat(r.differences()).singleElement().asString()
        .startsWith(name + ": 1 of 32768 elements differ; after dequantization 1 differ")
        .endsWith(TensorComparison.format(want));
  }

  @Test
  void oneInt4NibbleIsReportedAsOneScaleOfDifference() throws IOException {
    Path copy = copy("int4_g32");
    String x = "model.layers.0.mlp.experts.0.up_proj";
    int word = read(copy, x + ".weight_packed", 40, 4).getInt(); // row 1, elements 64..71
    write(copy, x + ".weight_packed", 40 * 4, ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN)
        .putInt(word ^ (1 << 8)).array()); // element 66 moves by one step
    float scale = Bf16.toFloat(read(copy, x + ".weight_scale", 8 + 66 / 32, 2).getShort());

    CheckpointComparison.Result r = CheckpointComparison.compare(Golden.dir("int4_g32"), copy);
    assertThat(r.differences()).singleElement().asString()
        .contains("1 of 4096 elements differ; after dequantization 1 differ")
        .endsWith("largest difference " + TensorComparison.format(scale));
  }

  @Test
  void quantizationConfigAndTensorSetsAreCompared() throws IOException {
    Path copy = copy("fp8");
    Path config = copy.resolve("config.json");
    Files.writeString(config, Files.readString(config).replace("\"dynamic\"", "\"static\""));
    assertThat(CheckpointComparison.compare(Golden.dir("fp8"), copy).differences())
        .singleElement().asString().startsWith("quantization_config differs");

    assertThat(CheckpointComparison.compare(Golden.dir("fp8"), Golden.dir("int4_g128"))
        .differences())
        .contains("unexpected tensor model.layers.0.mlp.experts.0.up_proj.weight_packed",
            "missing tensor model.layers.0.mlp.experts.0.up_proj.weight_scale_inv")
        .noneMatch(d -> d.startsWith("model.embed_tokens.weight")); // pass-through: equal
  }

  @Test
  void anIndexThatLiesMakesTheFolderUnreadable() throws IOException {
    Path copy = copy("fp8");
    Path index = copy.resolve(CheckpointFolder.INDEX_FILE);
    Files.writeString(index, Files.readString(index)
        .replace("\"lm_head.weight\": \"model-00002-of-00002", "\"lm_head.weight\": \"model-00001-of-00002"));
    assertThatThrownBy(() -> CheckpointComparison.compare(Golden.dir("fp8"), copy))
        .isInstanceOf(IOException.class).hasMessageContaining("lm_head.weight");
  }

  private Path copy(String golden) throws IOException {
    Path dst = tmp.resolve(golden);
    Files.createDirectories(dst);
    try (Stream<Path> files = Files.list(Golden.dir(golden))) {
      for (Path f : files.toList()) {
        Files.copy(f, dst.resolve(f.getFileName()));
      }
    }
    return dst;
  }

  /** {@code bytes} bytes of a tensor from byte {@code index * bytes} (little-endian). */
  private static ByteBuffer read(Path dir, String tensor, long index, int bytes) throws IOException {
    try (CheckpointFolder f = CheckpointFolder.open(dir)) {
      ByteBuffer w = f.source(tensor).window(index * bytes, bytes);
      ByteBuffer copy = ByteBuffer.allocate(bytes).order(ByteOrder.LITTLE_ENDIAN);
      copy.put(w).flip();
      return copy;
    }
  }

  private static void write(Path dir, String tensor, long byteOffset, byte[] bytes)
      throws IOException {
    try (Stream<Path> shards = Files.list(dir)) {
      for (Path shard : shards.filter(p -> p.toString().endsWith(".safetensors")).toList()) {
        long position;
        try (SafetensorsFile f = SafetensorsFile.open(shard)) {
          if (f.entries().stream().noneMatch(e -> e.spec().name().equals(tensor))) {
            continue;
          }
          ByteBuffer len = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
          try (var ch = java.nio.channels.FileChannel.open(shard)) {
            ch.read(len, 0);
          }
          position = 8 + len.flip().getLong() + f.entry(tensor).begin() + byteOffset;
        }
        try (RandomAccessFile raf = new RandomAccessFile(shard.toFile(), "rw")) {
          raf.seek(position);
          raf.write(bytes);
        }
        return;
      }
    }
    throw new IllegalArgumentException("no tensor " + tensor);
  }
}
