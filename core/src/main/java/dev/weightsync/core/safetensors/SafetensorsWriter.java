package dev.weightsync.core.safetensors;

import dev.weightsync.core.tensor.TensorSink;
import dev.weightsync.core.tensor.TensorSpec;
import java.io.Closeable;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLongArray;

/**
 * Writes one safetensors file whose layout is fixed up front: the header goes first, then tensor
 * bytes are written at their positions as they become available, in any order and from any
 * thread. Nothing is buffered on the heap, so a shard of any size streams through.
 */
public final class SafetensorsWriter implements TensorSink, Closeable {

  private final Path path;
  private final FileChannel channel;
  private final long dataStart;
  private final Map<String, Integer> index = new HashMap<>();
  private final List<SafetensorsEntry> entries;
  private final AtomicLongArray written;
  private final long dataLength;

  private SafetensorsWriter(Path path, FileChannel channel, long dataStart,
      List<SafetensorsEntry> entries) {
    this.path = path;
    this.channel = channel;
    this.dataStart = dataStart;
    this.entries = entries;
    this.written = new AtomicLongArray(entries.size());
    for (int i = 0; i < entries.size(); i++) {
      index.put(entries.get(i).spec().name(), i);
    }
    this.dataLength = entries.isEmpty() ? 0 : entries.get(entries.size() - 1).end();
  }

  /** Creates (or truncates) {@code path} holding {@code tensors}, laid out in the given order. */
  public static SafetensorsWriter create(Path path, List<TensorSpec> tensors,
      Map<String, String> metadata) throws IOException {
    List<SafetensorsEntry> entries = new ArrayList<>(tensors.size());
    long offset = 0;
    for (TensorSpec t : tensors) {
      entries.add(new SafetensorsEntry(t, offset, offset + t.byteLength()));
      offset += t.byteLength();
    }
    byte[] header = SafetensorsHeader.serialize(entries, metadata);
    FileChannel ch = FileChannel.open(path, StandardOpenOption.CREATE,
        StandardOpenOption.TRUNCATE_EXISTING, StandardOpenOption.WRITE, StandardOpenOption.READ);
    try {
      ByteBuffer head = ByteBuffer.allocate(8 + header.length)
          .order(java.nio.ByteOrder.LITTLE_ENDIAN);
      head.putLong(header.length).put(header).flip();
      while (head.hasRemaining()) {
        ch.write(head, head.position());
      }
      return new SafetensorsWriter(path, ch, 8L + header.length, entries);
    } catch (IOException | RuntimeException e) {
      ch.close();
      throw e;
    }
  }

  public Path path() {
    return path;
  }

  /** Total file size once complete. */
  public long fileSize() {
    return dataStart + dataLength;
  }

  @Override
  public void write(String name, long offset, ByteBuffer data) throws IOException {
    Integer i = index.get(name);
    if (i == null) {
      throw new IllegalArgumentException(path + ": tensor '" + name + "' is not in this file");
    }
    SafetensorsEntry e = entries.get(i);
    int length = data.remaining();
    if (offset < 0 || offset + length > e.end() - e.begin()) {
      throw new IllegalArgumentException(path + ": write of " + length + " bytes at " + offset
          + " falls outside tensor '" + name + "' (" + (e.end() - e.begin()) + " bytes)");
    }
    long position = dataStart + e.begin() + offset;
    while (data.hasRemaining()) {
      position += channel.write(data, position);
    }
    written.addAndGet(i, length);
  }

  /**
   * Checks that every tensor received all its bytes, optionally forces them to disk, and closes.
   *
   * @throws IOException naming the first incomplete tensor
   */
  public void finish(boolean fsync) throws IOException {
    try {
      for (int i = 0; i < entries.size(); i++) {
        SafetensorsEntry e = entries.get(i);
        long expected = e.end() - e.begin();
        if (written.get(i) != expected) {
          throw new IOException(path + ": tensor '" + e.spec().name() + "' received "
              + written.get(i) + " of " + expected + " bytes");
        }
      }
      if (fsync) {
        channel.force(true);
      }
    } finally {
      channel.close();
    }
  }

  @Override
  public void close() throws IOException {
    channel.close();
  }
}
