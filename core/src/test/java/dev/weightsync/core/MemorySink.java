package dev.weightsync.core;

import dev.weightsync.core.tensor.TensorSink;
import dev.weightsync.core.tensor.TensorSpec;
import java.nio.ByteBuffer;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/** Collects output tensors in heap arrays (tests only). */
public final class MemorySink implements TensorSink {
  private final Map<String, byte[]> tensors = new HashMap<>();

  public MemorySink(List<TensorSpec> outputs) {
    for (TensorSpec t : outputs) {
      tensors.put(t.name(), new byte[Math.toIntExact(t.byteLength())]);
    }
  }

  @Override
  public synchronized void write(String name, long offset, ByteBuffer data) {
    data.duplicate().get(tensors.get(name), (int) offset, data.remaining());
  }

  public byte[] get(String name) {
    return tensors.get(name);
  }

  public Map<String, byte[]> all() {
    return tensors;
  }
}
