package dev.weightsync.server.stage;

import dev.weightsync.core.tensor.DirectRegion;
import dev.weightsync.core.tensor.PageLocker;
import dev.weightsync.core.tensor.Unmapper;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicReferenceArray;
import java.util.concurrent.atomic.LongAdder;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * A kept shard file mapped whole, its page table filled ahead ({@link #load}) while it waits for
 * the next version, so that copies into it take no page faults. On tmpfs a read fault maps the
 * neighbouring pages too and leaves them writable (tmpfs asks for no notice of a page's first
 * write), so reading one byte a page is enough. A copy into a fresh mapping instead faults once
 * per 4 KiB page, and that, not the copy, was most of a staged write's time.
 *
 * <p>The windows may also be page-locked for a GPU ({@link #lock}), which then copies results
 * into them directly ({@link #direct}), skipping its pinned buffers and the host copy out of them.
 * They are unlocked before they are unmapped.
 *
 * <p>Unmapping waits for copies, loads, locks and direct regions in flight (a read-write lock)
 * and makes later ones refuse, so no thread ever touches a mapping that is gone (which would
 * crash the JVM), and no device copies into one.
 */
final class WarmMapping {

  /** Bytes of one mapping: a Java mapping is at most 2 GiB. */
  private static final long WINDOW = 1L << 30;
  /** Bytes loaded at a time, so that handing the mapping over or unmapping it waits little. */
  private static final int LOAD_STEP = 32 << 20;

  private final List<MappedByteBuffer> windows;
  private final long length;
  /**
   * The file, held open while mapped, so that its inode (and {@link #fileKey}) cannot pass to
   * another file even if this one is deleted.
   */
  private final FileChannel file;
  private final Object fileKey;
  /** Each window's page lock, or null while it has none; set under the read lock. */
  private final AtomicReferenceArray<PageLocker.Locked> locks;
  /** Where the bytes copied in by a device through {@link #direct} are counted. */
  private final LongAdder directBytes;
  private final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();
  private boolean unmapped; // guarded by lock

  private WarmMapping(List<MappedByteBuffer> windows, long length, FileChannel file,
      Object fileKey, LongAdder directBytes) {
    this.windows = windows;
    this.length = length;
    this.file = file;
    this.fileKey = fileKey;
    this.locks = new AtomicReferenceArray<>(windows.size());
    this.directBytes = directBytes;
  }

  /**
   * Maps the first {@code length} bytes of {@code file} (which holds at least that many); bytes
   * copied in through {@link #direct} are added to {@code directBytes}.
   */
  static WarmMapping of(Path file, long length, LongAdder directBytes) throws IOException {
    List<MappedByteBuffer> windows = new ArrayList<>();
    FileChannel c = FileChannel.open(file, StandardOpenOption.READ, StandardOpenOption.WRITE);
    try {
      Object key = Files.readAttributes(file, BasicFileAttributes.class).fileKey();
      for (long at = 0; at < length; at += WINDOW) {
        windows.add(c.map(FileChannel.MapMode.READ_WRITE, at, Math.min(WINDOW, length - at)));
      }
      return new WarmMapping(windows, length, c, key, directBytes);
    } catch (IOException | RuntimeException e) {
      windows.forEach(Unmapper::unmap);
      c.close();
      throw e;
    }
  }

  /**
   * The mapped file's identity (device and inode; null where the filesystem has none), unique
   * among the files that exist while this is mapped.
   */
  Object fileKey() {
    return fileKey;
  }

  /** Bytes mapped. */
  long length() {
    return length;
  }

  /**
   * Faults the pages in, a step at a time, until done or unmapped. It may still run once a shard
   * took the mapping over: it only reads, so it only faults in pages ahead of the shard's copies.
   */
  void load() {
    for (MappedByteBuffer w : windows) {
      for (int at = 0; at < w.capacity(); at += LOAD_STEP) {
        if (!lock.readLock().tryLock()) {
          return; // fails only while unmapping
        }
        try {
          if (unmapped) {
            return;
          }
          w.slice(at, Math.min(LOAD_STEP, w.capacity() - at)).load();
        } finally {
          lock.readLock().unlock();
        }
      }
    }
  }

  /**
   * Copies {@code data} (consumed) to {@code position} of the file; false, with nothing copied,
   * when the region lies past the mapping or the mapping is gone (the caller writes another way).
   */
  boolean copy(long position, ByteBuffer data) {
    int n = data.remaining();
    if (position < 0 || position + n > length) {
      return false;
    }
    lock.readLock().lock();
    try {
      if (unmapped) {
        return false;
      }
      int from = data.position();
      long at = position;
      while (at < position + n) {
        MappedByteBuffer w = windows.get((int) (at / WINDOW));
        int offset = (int) (at % WINDOW);
        int piece = (int) Math.min(w.capacity() - offset, position + n - at);
        w.put(offset, data, from + (int) (at - position), piece);
        at += piece;
      }
      data.position(from + n);
      return true;
    } finally {
      lock.readLock().unlock();
    }
  }

  /**
   * Page-locks the windows with {@code locker}, one at a time, until done or unmapped; windows it
   * refuses stay unlocked (their writes are copied in by {@link #copy}). Returns the bytes locked.
   */
  long lock(PageLocker locker) {
    long locked = 0;
    for (int i = 0; i < windows.size(); i++) {
      if (!lock.readLock().tryLock()) {
        return locked; // fails only while unmapping
      }
      try {
        if (unmapped) {
          return locked;
        }
        if (locks.get(i) != null) {
          continue; // locked before: this mapping waited as a staged version's
        }
        PageLocker.Locked l = locker.lock(windows.get(i));
        if (l != null) {
          locks.set(i, l);
          locked += windows.get(i).capacity();
        }
      } finally {
        lock.readLock().unlock();
      }
    }
    return locked;
  }

  /**
   * The mapped memory of {@code n} bytes at {@code position} of the file, for a device to copy
   * into, when it lies in one page-locked window; null otherwise, or when the mapping is going.
   * Unmapping waits until the region is released, which must happen on the thread that took it.
   */
  DirectRegion direct(long position, long n) {
    if (position < 0 || n <= 0 || position + n > length
        || position / WINDOW != (position + n - 1) / WINDOW) {
      return null;
    }
    int w = (int) (position / WINDOW);
    if (locks.get(w) == null || !lock.readLock().tryLock()) {
      return null;
    }
    if (unmapped) {
      lock.readLock().unlock();
      return null;
    }
    ByteBuffer memory = windows.get(w).slice((int) (position % WINDOW), (int) n);
    return new DirectRegion() {
      @Override
      public ByteBuffer memory() {
        return memory;
      }

      @Override
      public void release(boolean written) {
        if (written) {
          directBytes.add(n);
        }
        lock.readLock().unlock();
      }
    };
  }

  /**
   * Unlocks and unmaps every window, once copies, loads and direct regions in flight are done;
   * idempotent.
   */
  void unmap() {
    lock.writeLock().lock();
    try {
      if (!unmapped) {
        unmapped = true;
        for (int i = 0; i < windows.size(); i++) {
          PageLocker.Locked l = locks.getAndSet(i, null);
          if (l != null) {
            l.unlock(); // before the unmap: the device's lock holds the pages
          }
        }
        windows.forEach(Unmapper::unmap);
        try {
          file.close();
        } catch (IOException e) {
          // nothing was written through the channel; closing it only lets the inode go
        }
      }
    } finally {
      lock.writeLock().unlock();
    }
  }
}
