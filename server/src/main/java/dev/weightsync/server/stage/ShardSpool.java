package dev.weightsync.server.stage;

import dev.weightsync.core.safetensors.SafetensorsEntry;
import dev.weightsync.core.safetensors.SafetensorsHeader;
import dev.weightsync.core.tensor.DirectRegion;
import dev.weightsync.core.tensor.TensorSink;
import dev.weightsync.core.tensor.TensorSpec;
import dev.weightsync.core.tensor.Unmapper;
import java.io.Closeable;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * One staged shard, written while its tensors are still arriving: output tensors get contiguous
 * regions in the order they are quantized, and the safetensors header is written at the end into
 * space reserved at the front (padded with spaces, which JSON allows). Quantized bytes go into the
 * final file directly: no second copy. Should the header outgrow its reserve, the file is rewritten
 * once behind a header of the right size.
 *
 * <p>Large writes go through a memory mapping of their region rather than {@code pwrite}: Linux
 * serializes writes to one file (the inode lock), so a GPU's parallel bands would copy out one at
 * a time at a single core's speed (measured: 1.7 GB/s on /dev/shm), while copies into a mapping
 * run side by side.
 *
 * <p>The file may be a pruned version's shard of the same name ({@link ReusableShards}): every
 * byte a reader sees is written again (the regions of all tensors, the whole header reserve) and
 * the file is cut to its new length when finished, so nothing of the old version remains. Large
 * writes then copy into the kept file's mapping ({@link WarmMapping}) where it covers them, and a
 * GPU copies results straight into it where it is page-locked ({@link #direct}).
 */
public final class ShardSpool implements TensorSink, Closeable {

  /** Room for the header of roughly 1500 tensors. */
  static final int HEADER_RESERVE = 256 << 10;
  /** Writes at least this large are copied into a mapping; smaller ones use pwrite. */
  static final int MAPPED_WRITE_BYTES = 1 << 20;

  private final Path path;
  private final ReusableShards reusable;
  private final FileChannel channel;
  private final long takenOverBytes;
  /**
   * The taken-over file's mapping, its pages faulted in ahead; null for a new file, and once
   * finished and handed to {@link ReusableShards#park}.
   */
  private volatile WarmMapping warm;
  private final List<SafetensorsEntry> entries = new ArrayList<>();
  private final Map<String, SafetensorsEntry> byName = new HashMap<>();
  private long dataLength;

  /** A new shard file at {@code path}, or the file {@code reusable} keeps under its name. */
  public ShardSpool(Path path, ReusableShards reusable) throws IOException {
    this.path = path;
    this.reusable = reusable;
    ReusableShards.Taken kept = reusable.takeOver(path);
    this.takenOverBytes = kept == null ? 0 : kept.size();
    this.warm = kept == null ? null : kept.mapping();
    try {
      this.channel = kept != null
          ? FileChannel.open(path, StandardOpenOption.WRITE, StandardOpenOption.READ)
          : FileChannel.open(path, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE,
              StandardOpenOption.READ);
    } catch (IOException | RuntimeException e) {
      unmapWarm();
      throw e;
    }
  }

  /** The size of the kept file this shard was written into, or 0 for a new file. */
  long takenOverBytes() {
    return takenOverBytes;
  }

  public Path path() {
    return path;
  }

  /** Reserves contiguous regions for these output tensors. */
  public synchronized void allocate(List<TensorSpec> outputs) {
    for (TensorSpec t : outputs) {
      SafetensorsEntry e = new SafetensorsEntry(t, dataLength, dataLength + t.byteLength());
      if (byName.putIfAbsent(t.name(), e) != null) {
        throw new IllegalArgumentException("tensor '" + t.name() + "' is staged twice");
      }
      entries.add(e);
      dataLength += t.byteLength();
    }
    extendTo(HEADER_RESERVE + dataLength);
  }

  /**
   * Makes the file at least {@code length} bytes long (sparse) so that mappings of allocated
   * regions never have to grow it, which concurrent mappings could race on.
   */
  private void extendTo(long length) {
    try {
      if (length > channel.size()) {
        channel.write(ByteBuffer.allocate(1), length - 1);
      }
    } catch (IOException e) {
      throw new java.io.UncheckedIOException(path + ": cannot extend the shard", e);
    }
  }

  public synchronized List<TensorSpec> tensors() {
    return entries.stream().map(SafetensorsEntry::spec).toList();
  }

  public synchronized long dataLength() {
    return dataLength;
  }

  /** Where {@code length} bytes at {@code offset} of tensor {@code name} lie in the file. */
  private long position(String name, long offset, long length) {
    SafetensorsEntry e;
    synchronized (this) {
      e = byName.get(name);
    }
    if (e == null || offset < 0 || length < 0 || offset + length > e.end() - e.begin()) {
      throw new IllegalArgumentException(path + ": [" + offset + ", " + (offset + length)
          + ") lies outside tensor '" + name + "'");
    }
    return HEADER_RESERVE + e.begin() + offset;
  }

  /**
   * Writes {@code pieces}, one after another, at {@code offset} within tensor {@code name}: one
   * gather write from the buffers as they are (a chunk as the transport received it).
   */
  public void write(String name, long offset, List<ByteBuffer> pieces) throws IOException {
    ByteBuffer[] sources = pieces.stream().map(ByteBuffer::duplicate).toArray(ByteBuffer[]::new);
    long left = 0;
    for (ByteBuffer b : sources) {
      left += b.remaining();
    }
    long position = position(name, offset, left);
    synchronized (this) { // a gather write starts at the channel's position: one at a time
      channel.position(position);
      while (left > 0) {
        left -= channel.write(sources);
      }
    }
  }

  /** Reads tensor {@code name}'s bytes from {@code offset} into {@code into}, filling it. */
  public void read(String name, long offset, ByteBuffer into) throws IOException {
    long position = position(name, offset, into.remaining());
    while (into.hasRemaining()) {
      int n = channel.read(into, position);
      if (n < 0) {
        throw new IOException(path + ": ends inside tensor '" + name + "'");
      }
      position += n;
    }
  }

  @Override
  public void write(String name, long offset, ByteBuffer data) throws IOException {
    long position = position(name, offset, data.remaining());
    if (data.remaining() >= MAPPED_WRITE_BYTES) {
      WarmMapping w = warm;
      if (w != null && w.copy(position, data)) {
        return;
      }
      MappedByteBuffer region = channel.map(FileChannel.MapMode.READ_WRITE, position,
          data.remaining());
      try {
        region.put(data);
      } finally {
        Unmapper.unmap(region);
      }
      return;
    }
    while (data.hasRemaining()) {
      position += channel.write(data, position);
    }
  }

  /**
   * The kept file's page-locked mapping of {@code length} bytes at {@code offset} of tensor
   * {@code name}, for a device to copy into; null where there is none.
   */
  @Override
  public DirectRegion direct(String name, long offset, long length) {
    long position = position(name, offset, length);
    WarmMapping w = warm;
    return w == null ? null : w.direct(position, length);
  }

  /** Writes the header, forces the file to disk and closes it. */
  public synchronized void finish() throws IOException {
    byte[] header = SafetensorsHeader.serialize(entries, Map.of("format", "pt"));
    boolean headerFits = 8 + header.length <= HEADER_RESERVE;
    WarmMapping keepMapped = warm;
    if (keepMapped != null && headerFits && keepMapped.length() <= HEADER_RESERVE + dataLength) {
      warm = null; // every write is done, and the file is not cut below the mapping: it stays
    } else {
      unmapWarm(); // the file is cut below the mapping's end, or rewritten: none may stay mapped
      keepMapped = null;
    }
    try {
      if (headerFits) {
        ByteBuffer head = ByteBuffer.allocate(HEADER_RESERVE).order(ByteOrder.LITTLE_ENDIAN);
        head.putLong(HEADER_RESERVE - 8).put(header);
        while (head.hasRemaining()) {
          head.put((byte) ' ');
        }
        head.flip();
        while (head.hasRemaining()) {
          channel.write(head, head.position());
        }
        channel.truncate(HEADER_RESERVE + dataLength); // a file taken over may be longer
        channel.force(true);
        if (keepMapped != null) {
          reusable.park(keepMapped);
          keepMapped = null;
        }
      } else {
        rewriteWithHeader(header);
      }
    } finally {
      if (keepMapped != null) {
        keepMapped.unmap(); // the header could not be written: the part fails
      }
      channel.close();
    }
  }

  private void rewriteWithHeader(byte[] header) throws IOException {
    Path tmp = path.resolveSibling(path.getFileName() + ".rewrite");
    try (FileChannel out = FileChannel.open(tmp, StandardOpenOption.CREATE_NEW,
        StandardOpenOption.WRITE)) {
      ByteBuffer head = ByteBuffer.allocate(8 + header.length).order(ByteOrder.LITTLE_ENDIAN);
      head.putLong(header.length).put(header).flip();
      while (head.hasRemaining()) {
        out.write(head);
      }
      long done = 0;
      while (done < dataLength) {
        done += channel.transferTo(HEADER_RESERVE + done, dataLength - done, out);
      }
      out.force(true);
    }
    Files.move(tmp, path, java.nio.file.StandardCopyOption.REPLACE_EXISTING,
        java.nio.file.StandardCopyOption.ATOMIC_MOVE);
  }

  @Override
  public void close() throws IOException {
    unmapWarm();
    channel.close();
  }

  private void unmapWarm() {
    WarmMapping w = warm;
    if (w != null) {
      w.unmap();
    }
  }
}
