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
    ShardSet set = new ShardSet(dir, "model-00001-of-00001", ReusableShards.none());
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

  @Test
  void largeWritesFromManyThreadsIntoOneFileLandWhole() throws Exception {
    // Large writes (heap or direct, as the CPU and the GPU slots give them) copy into mappings of
    // their regions side by side, small ones pwrite; tensors' regions share pages at their ends.
    int piece = 2 << 20;
    int pieces = 16;
    ShardSpool spool = new ShardSpool(dir.resolve("model-00001-of-00001.safetensors"),
        ReusableShards.none());
    spool.allocate(List.of(TensorSpec.of("w", DType.U8, (long) piece * pieces),
        TensorSpec.of("small", DType.U8, 4096)));
    java.util.concurrent.ExecutorService pool = java.util.concurrent.Executors.newFixedThreadPool(4);
    try {
      List<java.util.concurrent.Future<?>> done = new java.util.ArrayList<>();
      for (int k = 0; k < pieces; k++) {
        int at = k;
        done.add(pool.submit(() -> {
          ByteBuffer data = at % 3 == 0 ? ByteBuffer.allocate(piece) : ByteBuffer.allocateDirect(piece);
          for (int i = 0; i < piece; i++) {
            data.put(i, (byte) (at * 7 + i));
          }
          spool.write("w", (long) at * piece, data);
          return null;
        }));
      }
      for (java.util.concurrent.Future<?> f : done) {
        f.get();
      }
    } finally {
      pool.shutdown();
    }
    spool.write("small", 0, ByteBuffer.allocateDirect(4096).put(0, (byte) 9));
    spool.finish();
    Files.writeString(dir.resolve(CheckpointFolder.INDEX_FILE), "{\"weight_map\":{"
        + "\"w\":\"model-00001-of-00001.safetensors\","
        + "\"small\":\"model-00001-of-00001.safetensors\"}}");
    try (CheckpointFolder f = CheckpointFolder.open(dir)) {
      ByteBuffer w = f.source("w").window(0, piece * pieces);
      for (int k = 0; k < pieces; k++) {
        for (int i = 0; i < piece; i += 4093) {
          assertThat(w.get(k * piece + i)).as("piece " + k + " byte " + i)
              .isEqualTo((byte) (k * 7 + i));
        }
        assertThat(w.get(k * piece + piece - 1)).isEqualTo((byte) (k * 7 + piece - 1));
      }
      assertThat(f.source("small").window(0, 4096).get(0)).isEqualTo((byte) 9);
    }
  }
}
