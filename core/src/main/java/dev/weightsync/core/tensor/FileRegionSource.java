package dev.weightsync.core.tensor;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A tensor whose bytes lie in a region of a file, memory-mapped. A region under 2 GiB is mapped
 * once and windows are slices of it; a larger one maps each window as it is asked for.
 *
 * <p>{@link #close} unmaps at once: a mapping otherwise lives until the garbage collector finds
 * it, and keeps a deleted file's pages (a spool on /dev/shm) in memory until then. No window may
 * be read after close. Unclosed, a source is unmapped by the collector, as any mapping.
 */
public final class FileRegionSource implements TensorSource, AutoCloseable {

  /** Bytes mapped by sources not yet closed (nor collected), for weightsync_staging_mapped_bytes. */
  private static final AtomicLong MAPPED = new AtomicLong();
  /** Takes an unclosed source's bytes off the count once the collector has unmapped it. */
  private static final java.lang.ref.Cleaner COLLECTED = java.lang.ref.Cleaner.create();

  /** This source's share of the count: given back once, by close or by the collector. */
  private static final class Count implements Runnable {
    private final AtomicLong bytes = new AtomicLong();

    void add(long n) {
      bytes.addAndGet(n);
      MAPPED.addAndGet(n);
    }

    @Override
    public void run() {
      MAPPED.addAndGet(-bytes.getAndSet(0));
    }
  }

  private final Count count = new Count();

  private final FileChannel channel;
  private final long start;
  private final long length;
  private final String name;
  private final MappedByteBuffer whole;
  /** Windows of a region over 2 GiB, each its own mapping; guarded by itself. */
  private final List<MappedByteBuffer> windows = new ArrayList<>();
  private boolean closed;

  private FileRegionSource(FileChannel channel, long start, long length, String name)
      throws IOException {
    this.channel = channel;
    this.start = start;
    this.length = length;
    this.name = name;
    if (length <= Integer.MAX_VALUE) {
      whole = channel.map(FileChannel.MapMode.READ_ONLY, start, length);
      count.add(length);
    } else {
      whole = null;
    }
    COLLECTED.register(this, count);
  }

  public static FileRegionSource of(FileChannel channel, long start, long length, String name)
      throws IOException {
    return new FileRegionSource(channel, start, length, name);
  }

  /** Bytes this process maps through sources that are not closed yet. */
  public static long mappedBytes() {
    return MAPPED.get();
  }

  @Override
  public ByteBuffer window(long offset, int len) throws IOException {
    if (offset < 0 || len < 0 || offset + len > length) {
      throw new IndexOutOfBoundsException(
          "window [" + offset + ", " + (offset + len) + ") outside tensor " + name);
    }
    synchronized (windows) {
      if (closed) {
        throw new IllegalStateException("tensor " + name + ": its mapping is closed");
      }
      if (whole != null) {
        return whole.slice(Math.toIntExact(offset), len).asReadOnlyBuffer()
            .order(ByteOrder.LITTLE_ENDIAN);
      }
      MappedByteBuffer w = channel.map(FileChannel.MapMode.READ_ONLY, start + offset, len);
      windows.add(w);
      count.add(len);
      return w.asReadOnlyBuffer().order(ByteOrder.LITTLE_ENDIAN);
    }
  }

  /** Unmaps the region; idempotent. */
  @Override
  public void close() {
    synchronized (windows) {
      if (closed) {
        return;
      }
      closed = true;
      if (whole != null) {
        Unmapper.unmap(whole);
      }
      windows.forEach(Unmapper::unmap);
      windows.clear();
      count.run();
    }
  }
}
