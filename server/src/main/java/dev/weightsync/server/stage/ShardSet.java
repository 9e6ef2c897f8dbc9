package dev.weightsync.server.stage;

import dev.weightsync.core.tensor.DirectRegion;
import dev.weightsync.core.tensor.TensorSink;
import dev.weightsync.core.tensor.TensorSpec;
import java.io.Closeable;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The staged shards of one part: one file, or several once {@link #spread} is asked for. Linux
 * adds a file's pages under a lock of that file, so many threads copying results into one file
 * (a GPU's slots reading CUDA buckets) queue on it; spread over several files they do not. Each
 * tensor's outputs go whole into the file holding the fewest bytes.
 */
public final class ShardSet implements TensorSink, Closeable {

  /** Bytes a file takes besides its tensors' (its header's room), for space reservations. */
  public static final long FILE_OVERHEAD = ShardSpool.HEADER_RESERVE;

  private final Path directory;
  private final String base;
  private final ReusableShards reusable;
  private final List<ShardSpool> spools = new ArrayList<>();
  private final Map<String, ShardSpool> byTensor = new ConcurrentHashMap<>();
  /** Bytes written so far, from any thread: what {@link StagingSpace} counts as on disk. */
  private final AtomicLong written = new AtomicLong();
  /** Sizes of the files taken over from {@link ReusableShards}. */
  private volatile long adopted;

  /**
   * A set of one shard, {@code directory/base.safetensors}; its files are taken over from
   * {@code reusable} where it keeps one of the same name.
   */
  public ShardSet(Path directory, String base, ReusableShards reusable) throws IOException {
    this.directory = directory;
    this.base = base;
    this.reusable = reusable;
    add(base + ".safetensors");
  }

  /** From now on spreads tensors over {@code files} files ({@code base-2.safetensors}...). */
  public synchronized void spread(int files) throws IOException {
    while (spools.size() < files) {
      add(base + "-" + (spools.size() + 1) + ".safetensors");
    }
  }

  private synchronized void add(String file) throws IOException {
    ShardSpool s = new ShardSpool(directory.resolve(file), reusable);
    spools.add(s);
    adopted += s.takenOverBytes();
  }

  /** Reserves regions for one tensor's outputs, all in one file. */
  public synchronized void allocate(List<TensorSpec> outputs) {
    ShardSpool s = spools.stream().min(Comparator.comparingLong(ShardSpool::dataLength))
        .orElseThrow();
    s.allocate(outputs);
    for (TensorSpec t : outputs) {
      byTensor.put(t.name(), s);
    }
  }

  @Override
  public void write(String name, long offset, ByteBuffer data) throws IOException {
    int n = data.remaining();
    spoolOf(name).write(name, offset, data);
    written.addAndGet(n);
  }

  /** See {@link ShardSpool#direct}; a region released as written counts as written here. */
  @Override
  public DirectRegion direct(String name, long offset, long length) {
    DirectRegion r = spoolOf(name).direct(name, offset, length);
    if (r == null) {
      return null;
    }
    return new DirectRegion() {
      @Override
      public ByteBuffer memory() {
        return r.memory();
      }

      @Override
      public void release(boolean isWritten) {
        r.release(isWritten);
        if (isWritten) {
          written.addAndGet(length);
        }
      }
    };
  }

  /** Writes bytes that lie in several buffers, in order, at {@code offset} of tensor {@code name}. */
  public void write(String name, long offset, List<ByteBuffer> pieces) throws IOException {
    long n = 0;
    for (ByteBuffer b : pieces) {
      n += b.remaining();
    }
    spoolOf(name).write(name, offset, pieces);
    written.addAndGet(n);
  }

  /**
   * Bytes of these files on the filesystem so far, for {@link StagingSpace}: those written, or
   * the sizes of the files taken over when larger (their pages are already allocated, so writing
   * into them takes no new space). The lower of the two bounds, so the ledger never counts space
   * as taken that is still to be taken.
   */
  public long onDisk() {
    return Math.max(written.get(), adopted);
  }

  /** Reads back staged bytes of tensor {@code name} from {@code offset}, filling {@code into}. */
  public void read(String name, long offset, ByteBuffer into) throws IOException {
    spoolOf(name).read(name, offset, into);
  }

  private ShardSpool spoolOf(String name) {
    ShardSpool s = byTensor.get(name);
    if (s == null) {
      throw new IllegalArgumentException("tensor '" + name + "' is not staged in " + base);
    }
    return s;
  }

  /** Bytes of tensor data in all files. */
  public synchronized long dataLength() {
    return spools.stream().mapToLong(ShardSpool::dataLength).sum();
  }

  /** Finishes every file that holds a tensor and deletes the others; returns those kept. */
  public synchronized List<ShardSpool> finish() throws IOException {
    List<ShardSpool> kept = new ArrayList<>();
    for (ShardSpool s : spools) {
      if (s.tensors().isEmpty() && s != spools.get(0)) {
        s.close();
        Files.deleteIfExists(s.path());
      } else {
        s.finish();
        kept.add(s);
      }
    }
    return List.copyOf(kept);
  }

  /** Closes and deletes every file (the part failed). */
  public synchronized void delete() throws IOException {
    for (ShardSpool s : spools) {
      s.close();
      Files.deleteIfExists(s.path());
    }
    reusable.sweep(); // files finished before the failure may have left their mappings parked
  }

  @Override
  public synchronized void close() throws IOException {
    for (ShardSpool s : spools) {
      s.close();
    }
  }
}
