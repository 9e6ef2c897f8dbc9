package dev.weightsync.server.stage;

import dev.weightsync.core.checkpoint.CheckpointConverter;
import dev.weightsync.core.tensor.PageLocker;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.LongAdder;
import java.util.logging.Logger;
import java.util.stream.Stream;

/**
 * The shard files of the versions pruned last, kept (with {@code staging-reuse}) so that the next
 * version's shard of the same name is written into their pages instead of fresh ones. A version's
 * shards have the same names and sizes from one version to the next, and writing into pages a
 * tmpfs already holds skips allocating and zeroing them: about twice as fast as fresh pages.
 *
 * <p>Each kept file is also mapped and its page table filled in the background
 * ({@link WarmMapping}), so that the shard taking it over copies results in without page faults.
 * A shard finished as long as the mapping hands it back ({@link #park}): it stays while the file
 * is staged, and when that version is pruned in turn the file is kept with it, nothing to redo.
 * Files freed here are unmapped first, and parked mappings of files gone are unmapped by
 * {@link #sweep}. Given a GPU's {@link PageLocker} ({@link #lockPagesWith}), the same thread
 * then page-locks the mapping, so that the GPU copies the next version's results straight into
 * the file's pages (see {@link WarmMapping#direct}); where locking fails (a filesystem whose
 * pages cannot be pinned) the results are copied in from the GPU's pinned buffers as before.
 *
 * <p>What it costs: the space of one pruned version stays taken between versions (the peak is
 * the same, as the next version takes the files over). A reservation that would otherwise be
 * refused frees them first ({@link StagingSpace.Spare}). Files not taken by the time the next
 * version is pruned are deleted, so at most one version's files are kept. A restart begins with
 * none.
 *
 * <p>Thread-safe.
 */
public final class ReusableShards implements StagingSpace.Spare {

  /** The folder under the staging root; its dot keeps it from ever being taken for a version. */
  static final String FOLDER = ".reusable";

  private static final Logger LOG = Logger.getLogger(ReusableShards.class.getName());
  private static final ReusableShards NONE = new ReusableShards(null);

  /** Null when reuse is off: pruned versions are deleted. */
  private final Path folder;
  /** Kept files by shard file name. */
  private final Map<String, Taken> kept = new HashMap<>();
  /** Finished shards' mappings, kept while their files are staged; null when reuse is off. */
  private final ParkedMappings parked;
  /** Bytes a device copied straight into kept files. */
  private final LongAdder directBytes = new LongAdder();
  private volatile PageLocker locker = PageLocker.NONE;
  /** Fills the kept files' page tables, one file after another, off the versions' paths. */
  private final ThreadPoolExecutor loader = new ThreadPoolExecutor(1, 1, 10, TimeUnit.SECONDS,
      new LinkedBlockingQueue<>(), r -> {
        Thread t = new Thread(r, "weightsync-staging-warm");
        t.setDaemon(true);
        return t;
      });

  /**
   * A kept file as a new shard takes it over: its size, and its mapping ({@code null} when it
   * could not be mapped), which the shard must unmap when done.
   */
  record Taken(long size, WarmMapping mapping) {}

  private ReusableShards(Path folder) {
    this.folder = folder;
    this.parked = folder == null ? null : new ParkedMappings(folder.getParent(), folder);
    loader.allowCoreThreadTimeOut(true);
  }

  /** No reuse: pruned files are deleted, and no shard takes one over. */
  public static ReusableShards none() {
    return NONE;
  }

  /**
   * The kept files of the staging folder {@code root}: under {@code root/.reusable} when
   * {@code reuse}, else none. Files left there by an earlier run are deleted either way.
   */
  static ReusableShards open(Path root, boolean reuse) throws IOException {
    Path folder = root.resolve(FOLDER);
    CheckpointConverter.deleteTree(folder);
    if (!reuse) {
      return NONE;
    }
    Files.createDirectory(folder);
    return new ReusableShards(folder);
  }

  /**
   * Page-locks files kept from now on with {@code locker} (a GPU quantizer's), once their pages
   * are loaded.
   */
  public void lockPagesWith(PageLocker locker) {
    this.locker = locker;
  }

  /** Bytes a device has copied straight into kept files' pages, since start. */
  public long directBytes() {
    return directBytes.sum();
  }

  /**
   * Takes over the shard files of {@code pruned} (published folders about to be deleted); those
   * still kept from an earlier prune are deleted first. Nothing when reuse is off.
   */
  synchronized void keep(List<Path> pruned) throws IOException {
    if (folder == null) {
      return;
    }
    release();
    for (Path version : pruned) {
      try (Stream<Path> s = Files.list(version)) {
        for (Path f : s.filter(ReusableShards::isShard).toList()) {
          String name = f.getFileName().toString();
          long size = Files.size(f);
          WarmMapping still = parked.take(f);
          Path at = folder.resolve(name);
          try {
            Files.move(f, at, StandardCopyOption.REPLACE_EXISTING,
                StandardCopyOption.ATOMIC_MOVE); // a part folder's names may repeat another's
          } catch (IOException | RuntimeException e) {
            if (still != null) {
              still.unmap(); // its file stays in the pruned folder, which is deleted
            }
            throw e;
          }
          Taken old = kept.put(name, new Taken(size, still != null && still.length() == size
              ? relocked(still) : warm(at, size, still)));
          if (old != null && old.mapping() != null) {
            old.mapping().unmap(); // its file was just replaced
          }
        }
      }
    }
    sweep();
  }

  /**
   * Keeps a finished shard's mapping while its file stays staged (see {@link #keep}); only for
   * a mapping that lies within its file.
   */
  void park(WarmMapping m) {
    if (parked == null || m.fileKey() == null) {
      m.unmap(); // it could not be found again
      return;
    }
    WarmMapping old = parked.park(m);
    if (old != null) {
      old.unmap();
    }
  }

  /** Unmaps the parked mappings of files no longer staged (see {@link ParkedMappings#sweep}). */
  void sweep() {
    if (parked != null) {
      parked.sweep();
    }
  }

  /** A parked mapping kept again: its pages are loaded; lock what is not locked yet. */
  private WarmMapping relocked(WarmMapping m) {
    PageLocker l = locker;
    if (l != PageLocker.NONE) {
      try {
        loader.execute(() -> m.lock(l));
      } catch (RuntimeException e) { // closed
        // the mapping stays usable without further locks
      }
    }
    return m;
  }

  /**
   * A new mapping of a kept file, loading in the background; null when it cannot be mapped.
   * {@code stale}: a parked mapping of the file that no longer covers it, unmapped first.
   */
  private WarmMapping warm(Path file, long size, WarmMapping stale) {
    if (stale != null) {
      stale.unmap();
    }
    if (size == 0) {
      return null;
    }
    WarmMapping m = null;
    try {
      m = WarmMapping.of(file, size, directBytes);
      WarmMapping mapped = m;
      PageLocker l = locker;
      loader.execute(() -> {
        long start = System.nanoTime();
        mapped.load();
        long loaded = System.nanoTime();
        long locked = l == PageLocker.NONE ? 0 : mapped.lock(l);
        LOG.fine(() -> String.format("kept %s: %d bytes loaded in %.3f s, %d page-locked in %.3f s",
            file.getFileName(), size, (loaded - start) / 1e9, locked,
            (System.nanoTime() - loaded) / 1e9));
      });
      return m;
    } catch (IOException | RuntimeException e) {
      if (m != null) {
        m.unmap();
      }
      LOG.fine(() -> "kept " + file + " unmapped (" + e + "): its pages are faulted in as written");
      return null;
    }
  }

  /**
   * Moves the kept file named like {@code shard} to {@code shard}, for a new shard to write into;
   * null when none is kept (then the caller creates the file).
   */
  synchronized Taken takeOver(Path shard) throws IOException {
    if (folder == null) {
      return null;
    }
    String name = shard.getFileName().toString();
    Taken t = kept.remove(name);
    if (t == null) {
      return null;
    }
    try {
      Files.move(folder.resolve(name), shard, StandardCopyOption.ATOMIC_MOVE);
    } catch (IOException | RuntimeException e) {
      if (t.mapping() != null) {
        t.mapping().unmap();
      }
      Files.deleteIfExists(folder.resolve(name));
      throw e;
    }
    return t;
  }

  /** Bytes of the files kept now. */
  public synchronized long bytes() {
    return kept.values().stream().mapToLong(Taken::size).sum();
  }

  /** Unmaps and deletes every kept file; returns the bytes freed. */
  @Override
  public synchronized long release() {
    long freed = 0;
    for (var e : Map.copyOf(kept).entrySet()) {
      kept.remove(e.getKey());
      if (e.getValue().mapping() != null) {
        e.getValue().mapping().unmap(); // before the delete: a mapped file keeps its pages
      }
      try {
        Files.deleteIfExists(folder.resolve(e.getKey()));
        freed += e.getValue().size();
      } catch (IOException ex) {
        LOG.warning("could not delete the kept shard file " + folder.resolve(e.getKey()) + ": "
            + ex.getMessage());
      }
    }
    return freed;
  }

  /** Frees the kept files and stops the loader; for shutdown, before the GPU goes. */
  public void close() {
    if (folder == null) {
      return;
    }
    loader.shutdownNow();
    parked.unmapAll();
    release();
  }

  static boolean isShard(Path p) {
    return p.getFileName().toString().endsWith(".safetensors") && Files.isRegularFile(p);
  }
}
