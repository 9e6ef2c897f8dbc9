package dev.weightsync.cli.engine;

import com.fasterxml.jackson.databind.JsonNode;
import dev.weightsync.core.checkpoint.CheckpointFolder;
import dev.weightsync.core.tensor.DType;
import dev.weightsync.core.tensor.TensorSpec;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Arrays;

/**
 * What a stand-in engine does with a folder it is told to load, as an engine's loader would:
 * opens it (index and shards must agree: {@link CheckpointFolder}), refuses quantized tensors
 * without a {@code quantization_config}, checks each scale's shape against its weight (FP8 block:
 * one per 128 x 128 block; INT4 group: one per group, eight values per packed int32), and reads
 * every byte of every tensor.
 */
record FolderLoad(int tensors, long bytes) {

  static FolderLoad of(Path dir) throws IOException {
    try (CheckpointFolder f = CheckpointFolder.open(dir)) {
      JsonNode qc = f.config().path("quantization_config");
      if (qc.isMissingNode() && f.tensors().stream()
          .anyMatch(t -> t.dtype() == DType.F8_E4M3 || t.name().endsWith("_scale_inv")
              || t.name().endsWith(".weight_packed"))) {
        // FP8 weights and scales, INT4 packs: what only a quantized checkpoint holds (an F32 or
        // integer tensor alone is ordinary in a BF16 one)
        throw new IOException("quantized tensors but no quantization_config in config.json");
      }
      for (TensorSpec t : f.tensors()) {
        checkScales(f, t, qc);
      }
      long bytes = 0;
      for (TensorSpec t : f.tensors()) {
        var w = f.source(t.name()).window(0, (int) Math.min(t.byteLength(), Integer.MAX_VALUE));
        bytes += w.remaining();
      }
      return new FolderLoad(f.tensors().size(), bytes);
    }
  }

  private static void checkScales(CheckpointFolder f, TensorSpec t, JsonNode qc)
      throws IOException {
    if (t.name().endsWith("_scale_inv")) {
      String weight = t.name().substring(0, t.name().length() - "_scale_inv".length());
      TensorSpec w = f.contains(weight) ? f.spec(weight) : null;
      if (w == null || w.rank() != 2) {
        throw new IOException(t.name() + " scales no 2-D weight " + weight);
      }
      expect(t, (w.rows() + 127) / 128, (w.cols() + 127) / 128);
    } else if (t.name().endsWith(".weight_packed")) {
      String module = t.name().substring(0, t.name().length() - ".weight_packed".length());
      String scaleName = module + ".weight_scale";
      if (!f.contains(scaleName)) {
        throw new IOException(t.name() + " has no " + scaleName);
      }
      int group = groupSize(qc);
      long rows = t.rows();
      long cols = t.cols() * 8;
      if (group <= 0 || cols % group != 0) {
        throw new IOException(t.name() + ": " + cols + " columns are not groups of " + group
            + " (quantization_config)");
      }
      expect(f.spec(scaleName), rows, cols / group);
    }
  }

  /** The INT4 group size a compressed-tensors config declares (its first group's). */
  private static int groupSize(JsonNode qc) {
    for (JsonNode group : qc.path("config_groups")) {
      int g = group.path("weights").path("group_size").asInt(0);
      if (g > 0) {
        return g;
      }
    }
    return 0;
  }

  private static void expect(TensorSpec t, long rows, long cols) throws IOException {
    if (t.rank() != 2 || t.rows() != rows || t.cols() != cols) {
      throw new IOException(t.name() + " has shape " + Arrays.toString(t.shape())
          + "; its weight needs [" + rows + ", " + cols + "]");
    }
  }
}
