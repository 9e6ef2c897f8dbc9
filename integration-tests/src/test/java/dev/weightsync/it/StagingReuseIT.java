package dev.weightsync.it;

import static org.assertj.core.api.Assertions.assertThat;

import dev.weightsync.client.Tensor;
import dev.weightsync.core.quant.Bf16;
import dev.weightsync.core.tensor.DType;
import dev.weightsync.core.tensor.TensorSource;
import dev.weightsync.core.tensor.TensorSpec;
import dev.weightsync.proto.v1.EngineOutcome;
import dev.weightsync.proto.v1.UpdateWeightsResponse;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * staging-reuse: versions staged into the files of pruned ones are byte for byte what a sidecar
 * without reuse stages, whatever the old files held and however their sizes differ.
 */
class StagingReuseIT {

  @TempDir Path tmp;

  private static final String SHARD = "model-00001-of-00001.safetensors";

  /** One step of the sequence: the version's tensors, pushed as one part. */
  private interface Push {
    UpdateWeightsResponse to(SidecarHarness h, String version) throws Exception;
  }

  @Test
  void versionsStagedIntoReusedFilesEqualThoseStagedIntoFreshOnes() throws Exception {
    // Some versions are smaller than the file they take over, some larger. (The CPU writes its
    // results in bands below the size that goes through a mapping: StagingAreaTest covers the
    // copies into a kept file's mapping, tools/gpu/push-cuda.sh the GPU's.)
    String up = "model.layers.0.mlp.up_proj.weight";
    String down = "model.layers.0.mlp.down_proj.weight";
    List<Push> sequence = List.of(
        (h, v) -> h.client.push(v, 0, 1, List.of(bf16(up, 1024, 2048, 1), bf16(down, 64, 128, 1))),
        (h, v) -> h.client.push(v, 0, 1, List.of(bf16(up, 1024, 2048, 2), bf16(down, 64, 128, 2))),
        (h, v) -> h.client.push(v, 0, 1, List.of(bf16(up, 256, 512, 3))), // into 0's, larger
        (h, v) -> h.client.push(v, 0, 1, List.of(bf16(up, 2048, 2048, 4),
            bf16(down, 2048, 1024, 5))), // into 1's, which is smaller
        (h, v) -> h.client.pushFolder(Launcher.golden("bf16"), v, 0, 1));
    Map<String, Object> common = Map.of("format", "fp8-block", "keep-versions", 1);
    try (SidecarHarness reuse = new SidecarHarness(tmp.resolve("reuse"),
            with(common, "staging-reuse", true));
        SidecarHarness fresh = new SidecarHarness(tmp.resolve("fresh"), common)) {
      Object[] inodes = new Object[sequence.size()];
      for (int i = 0; i < sequence.size(); i++) {
        String v = "v" + i;
        Path kept = reuse.staging.resolve(".reusable").resolve(SHARD);
        if (i >= 2) { // version i - 2 was pruned after version i - 1: its file is kept
          assertThat(Files.readAttributes(kept, BasicFileAttributes.class).fileKey())
              .isEqualTo(inodes[i - 2]);
        }
        UpdateWeightsResponse r = sequence.get(i).to(reuse, v);
        assertThat(r.getEngines(0).getOutcome()).isEqualTo(EngineOutcome.LOADED);
        assertThat(sequence.get(i).to(fresh, v).getEngines(0).getOutcome())
            .isEqualTo(EngineOutcome.LOADED);
        Path staged = Path.of(r.getStagedPath());
        assertSameFiles(fresh.staging.resolve(v), staged);
        inodes[i] = Files.readAttributes(staged.resolve(SHARD), BasicFileAttributes.class)
            .fileKey();
        if (i >= 2) { // staged into that file, moved out of .reusable
          assertThat(inodes[i]).as("version %d's shard is version %d's file", i, i - 2)
              .isEqualTo(inodes[i - 2]);
          assertThat(Files.readAttributes(kept, BasicFileAttributes.class).fileKey())
              .as("the file kept now is version %d's", i - 1).isEqualTo(inodes[i - 1]);
        }
        assertThat(reuse.stagedVersions()).containsExactly(v);
      }
      assertThat(reuse.stagingEntries()).containsExactly(".reusable", "v4");
      assertThat(fresh.stagingEntries()).containsExactly("v4");
      Launcher.Result cmp = Launcher.compare(Launcher.golden("fp8"), reuse.staging.resolve("v4"));
      assertThat(cmp.exitCode()).as(cmp.stdout()).isZero();
    }
  }

  private static void assertSameFiles(Path expected, Path actual) throws Exception {
    try (Stream<Path> s = Files.list(expected)) {
      List<Path> files = s.sorted().toList();
      try (Stream<Path> a = Files.list(actual)) {
        assertThat(a.map(p -> p.getFileName().toString()).sorted())
            .containsExactlyElementsOf(files.stream().map(p -> p.getFileName().toString())
                .toList());
      }
      for (Path f : files) {
        assertThat(Files.mismatch(f, actual.resolve(f.getFileName())))
            .as("first differing byte of %s", actual.resolve(f.getFileName())).isEqualTo(-1);
      }
    }
  }

  private static Map<String, Object> with(Map<String, Object> base, String key, Object value) {
    Map<String, Object> m = new java.util.HashMap<>(base);
    m.put(key, value);
    return m;
  }

  private static Tensor bf16(String name, int rows, int cols, int seed) {
    ByteBuffer b = ByteBuffer.allocate(rows * cols * 2).order(ByteOrder.LITTLE_ENDIAN);
    for (int i = 0; b.hasRemaining(); i++) {
      b.putShort(Bf16.fromFloat(((i * 7919 + seed) % 251 - 125) * 1e-3f));
    }
    return new Tensor(TensorSpec.of(name, DType.BF16, rows, cols), TensorSource.of(b.flip()));
  }
}
