package dev.weightsync.core.safetensors;

import dev.weightsync.core.tensor.FileRegionSource;
import dev.weightsync.core.tensor.TensorSource;
import dev.weightsync.core.tensor.TensorSpec;
import java.io.Closeable;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A safetensors file opened for reading. The header is validated on open; tensor bytes are
 * memory-mapped on demand, so files (and tensors) larger than 2 GiB and larger than the heap are
 * fine.
 */
public final class SafetensorsFile implements Closeable {

  private final Path path;
  private final FileChannel channel;
  private final long dataStart;
  private final SafetensorsHeader header;
  private final Map<String, SafetensorsEntry> byName = new LinkedHashMap<>();
  /** The mappings handed out, unmapped at close. */
  private final List<FileRegionSource> sources = new ArrayList<>();

  private SafetensorsFile(Path path, FileChannel channel, long dataStart, SafetensorsHeader header) {
    this.path = path;
    this.channel = channel;
    this.dataStart = dataStart;
    this.header = header;
    for (SafetensorsEntry e : header.entries()) {
      byName.put(e.spec().name(), e);
    }
  }

  public static SafetensorsFile open(Path path) throws IOException {
    FileChannel ch = FileChannel.open(path, StandardOpenOption.READ);
    try {
      long size = ch.size();
      if (size < 8) {
        throw new SafetensorsFormatException(
            path, null, "file is " + size + " bytes, too short for the 8-byte header length");
      }
      ByteBuffer len = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
      readFully(ch, len, 0);
      long headerLength = len.flip().getLong();
      if (headerLength < 0 || headerLength > SafetensorsHeader.MAX_HEADER_BYTES) {
        throw new SafetensorsFormatException(
            path, null, "header length " + Long.toUnsignedString(headerLength)
                + " exceeds the limit of " + SafetensorsHeader.MAX_HEADER_BYTES + " bytes");
      }
      if (headerLength > size - 8) {
        throw new SafetensorsFormatException(
            path, null, "header length " + headerLength + " runs past the end of the file ("
                + size + " bytes)");
      }
      ByteBuffer headerBytes = ByteBuffer.allocate((int) headerLength);
      readFully(ch, headerBytes, 8);
      SafetensorsHeader header =
          SafetensorsHeader.parse(path, headerBytes.array(), size - 8 - headerLength);
      return new SafetensorsFile(path, ch, 8 + headerLength, header);
    } catch (IOException | RuntimeException e) {
      ch.close();
      throw e;
    }
  }

  private static void readFully(FileChannel ch, ByteBuffer dst, long position) throws IOException {
    while (dst.hasRemaining()) {
      int n = ch.read(dst, position + dst.position());
      if (n < 0) {
        throw new IOException("unexpected end of file");
      }
    }
  }

  public Path path() {
    return path;
  }

  /** Tensors in data order. */
  public List<SafetensorsEntry> entries() {
    return header.entries();
  }

  public Map<String, String> metadata() {
    return header.metadata();
  }

  public SafetensorsEntry entry(String name) {
    SafetensorsEntry e = byName.get(name);
    if (e == null) {
      throw new IllegalArgumentException(path + ": no tensor '" + name + "'");
    }
    return e;
  }

  public TensorSpec spec(String name) {
    return entry(name).spec();
  }

  /**
   * A source over one tensor's bytes, memory-mapped, and unmapped when it is closed or this file
   * is: a deleted file's pages (a pruned staged version on /dev/shm) go back at once then, not when
   * the collector runs. No source may be read after this file is closed.
   */
  public TensorSource source(String name) throws IOException {
    SafetensorsEntry e = entry(name);
    FileRegionSource s =
        FileRegionSource.of(channel, dataStart + e.begin(), e.end() - e.begin(), name);
    synchronized (sources) {
      sources.add(s);
    }
    return s;
  }

  @Override
  public void close() throws IOException {
    synchronized (sources) {
      sources.forEach(FileRegionSource::close);
      sources.clear();
    }
    channel.close();
  }
}
