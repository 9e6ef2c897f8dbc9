package dev.weightsync.core.checkpoint;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.weightsync.core.safetensors.SafetensorsWriter;
import dev.weightsync.core.tensor.TensorSink;
import dev.weightsync.core.tensor.TensorSpec;
import java.io.Closeable;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * Writes a Hugging Face checkpoint folder whose tensors are known up front: shards of at most a
 * configured size (a tensor larger than that gets a shard of its own), an index whose
 * {@code total_size} is the true tensor byte count, and {@code config.json}. Tensor bytes stream
 * in through {@link #write} in any order.
 */
public final class CheckpointWriter implements TensorSink, Closeable {

  public static final long DEFAULT_MAX_SHARD_BYTES = 5L << 30;

  private final Path dir;
  private final List<SafetensorsWriter> shards = new ArrayList<>();
  private final Map<String, SafetensorsWriter> shardOf = new HashMap<>();
  private final long totalSize;

  /** Creates the shard files in {@code dir}, which must exist. */
  public CheckpointWriter(Path dir, List<TensorSpec> tensors, long maxShardBytes) throws IOException {
    if (maxShardBytes <= 0) {
      throw new IllegalArgumentException("maximum shard size must be positive: " + maxShardBytes);
    }
    this.dir = dir;
    List<List<TensorSpec>> groups = new ArrayList<>();
    List<TensorSpec> current = new ArrayList<>();
    long currentBytes = 0;
    long total = 0;
    for (TensorSpec t : tensors) {
      if (!current.isEmpty() && currentBytes + t.byteLength() > maxShardBytes) {
        groups.add(current);
        current = new ArrayList<>();
        currentBytes = 0;
      }
      current.add(t);
      currentBytes += t.byteLength();
      total += t.byteLength();
    }
    if (!current.isEmpty() || groups.isEmpty()) {
      groups.add(current);
    }
    this.totalSize = total;
    try {
      for (int i = 0; i < groups.size(); i++) {
        String name = String.format("model-%05d-of-%05d.safetensors", i + 1, groups.size());
        SafetensorsWriter w = SafetensorsWriter.create(dir.resolve(name), groups.get(i),
            Map.of("format", "pt"));
        shards.add(w);
        for (TensorSpec t : groups.get(i)) {
          shardOf.put(t.name(), w);
        }
      }
    } catch (IOException | RuntimeException e) {
      close();
      throw e;
    }
  }

  public Path dir() {
    return dir;
  }

  /** Sum of all tensors' byte lengths (the index's {@code total_size}). */
  public long totalSize() {
    return totalSize;
  }

  @Override
  public void write(String name, long offset, ByteBuffer data) throws IOException {
    SafetensorsWriter w = shardOf.get(name);
    if (w == null) {
      throw new IllegalArgumentException(dir + ": tensor '" + name + "' is not part of this checkpoint");
    }
    w.write(name, offset, data);
  }

  /**
   * Checks every tensor is complete, closes the shards, and writes the index and
   * {@code config.json}.
   */
  public void finish(ObjectNode config, boolean fsync) throws IOException {
    for (SafetensorsWriter w : shards) {
      w.finish(fsync);
    }
    ObjectNode index = CheckpointFolder.JSON.createObjectNode();
    index.putObject("metadata").put("total_size", totalSize);
    ObjectNode map = index.putObject("weight_map");
    Map<String, String> sorted = new TreeMap<>();
    shardOf.forEach((t, w) -> sorted.put(t, w.path().getFileName().toString()));
    sorted.forEach(map::put);
    writeJson(dir.resolve(CheckpointFolder.INDEX_FILE), index);
    writeJson(dir.resolve(CheckpointFolder.CONFIG_FILE), config);
  }

  /** Copies the source folder's other files (tokenizer etc.) unchanged. */
  public void copyOtherFiles(CheckpointFolder source) throws IOException {
    for (Path p : source.otherFiles()) {
      Files.copy(p, dir.resolve(p.getFileName()), StandardCopyOption.REPLACE_EXISTING);
    }
  }

  static void writeJson(Path file, ObjectNode node) throws IOException {
    Files.write(file, CheckpointFolder.JSON.writerWithDefaultPrettyPrinter().writeValueAsBytes(node));
  }

  @Override
  public void close() throws IOException {
    for (SafetensorsWriter w : shards) {
      w.close();
    }
  }
}
