package dev.weightsync.cli;

import dev.weightsync.core.tensor.TensorSink;
import dev.weightsync.core.tensor.TensorSpec;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** Output tensors collected in heap arrays, to compare two quantizers' bytes (benchmarks). */
final class MemoryTensors implements TensorSink {
  private final Map<String, byte[]> tensors = new LinkedHashMap<>();

  MemoryTensors(List<TensorSpec> outputs) {
    for (TensorSpec t : outputs) {
      tensors.put(t.name(), new byte[Math.toIntExact(t.byteLength())]);
    }
  }

  @Override
  public synchronized void write(String name, long offset, ByteBuffer data) {
    data.duplicate().get(tensors.get(name), (int) offset, data.remaining());
  }

  /** Names of the tensors whose bytes differ from {@code other}'s. */
  List<String> differences(MemoryTensors other) {
    List<String> out = new ArrayList<>();
    tensors.forEach((name, bytes) -> {
      if (!Arrays.equals(bytes, other.tensors.get(name))) {
        out.add(name.substring(name.lastIndexOf('.') + 1));
      }
    });
    return out;
  }
}
