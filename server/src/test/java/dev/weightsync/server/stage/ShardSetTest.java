package dev.weightsync.server.stage;

import static org.assertj.core.api.Assertions.assertThat;

import dev.weightsync.core.checkpoint.CheckpointFolder;
import dev.weightsync.core.tensor.DType;
import dev.weightsync.core.tensor.TensorSpec;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ShardSetTest {

  @TempDir Path dir;

  private static int size(String name) {
    return name.equals("a") ? 4 << 20 : name.endsWith("_scale") ? 16 : 2 << 20;
  }

  @Test
  void spreadTensorsLandWholeInTheLeastFilledFileAndEmptyFilesAreDropped() throws Exception {
    ShardSet set = new ShardSet(dir, "model-00001-of-00001");
    set.allocate(List.of(TensorSpec.of("a", DType.U8, size("a")))); // before spreading: file 1
    set.spread(4);
    for (String name : List.of("b", "c")) {
      set.allocate(List.of(TensorSpec.of(name, DType.U8, size(name)),
          TensorSpec.of(name + "_scale", DType.U8, size(name + "_scale"))));
    }
    for (String name : List.of("a", "b", "b_scale", "c", "c_scale")) {
      ByteBuffer data = ByteBuffer.allocate(size(name));
      for (int i = 0; i < data.capacity(); i++) {
        data.put(i, (byte) (name.charAt(0) + i));
      }
      set.write(name, 0, data);
    }
    List<ShardSpool> kept = set.finish();
    String f1 = "model-00001-of-00001.safetensors";
    String f2 = "model-00001-of-00001-2.safetensors";
    String f3 = "model-00001-of-00001-3.safetensors";
    assertThat(kept).extracting(s -> s.path().getFileName().toString())
        .containsExactly(f1, f2, f3);
    assertThat(Files.exists(dir.resolve("model-00001-of-00001-4.safetensors"))).isFalse();
    assertThat(kept.get(1).tensors()).extracting(TensorSpec::name).containsExactly("b", "b_scale");
    // the files read back as a checkpoint once an index names them
    Files.writeString(dir.resolve(CheckpointFolder.INDEX_FILE), "{\"weight_map\":{"
        + "\"a\":\"" + f1 + "\",\"b\":\"" + f2 + "\",\"b_scale\":\"" + f2 + "\","
        + "\"c\":\"" + f3 + "\",\"c_scale\":\"" + f3 + "\"}}");
    try (CheckpointFolder f = CheckpointFolder.open(dir)) {
      assertThat(f.tensors()).hasSize(5);
      assertThat(f.source("c").window(0, size("c")).get(12345)).isEqualTo((byte) ('c' + 12345));
    }
  }
}
