package dev.weightsync.server.pipeline;

import dev.weightsync.server.engine.EngineAdapter;
import dev.weightsync.server.stage.ShardSet;
import dev.weightsync.server.stage.StagingArea;
import dev.weightsync.server.stage.VersionFolder;
import io.grpc.Status;
import io.grpc.StatusException;
import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.logging.Logger;

/**
 * Makes weight versions atomic. Parts of a version register here as their streams open (a part
 * sent over several streams, one stream per sub-part); a part that fails is forgotten (its files
 * deleted) so it can be retried; when every sub-part of every part has committed, the version goes to {@link VersionDelivery}, which publishes it, calls the engines
 * and tells every part's caller the outcome. Parts that do not all arrive within the part timeout
 * (counted from the version's first header) abort the version: nothing reaches an engine.
 *
 * <p>Thread-safe. Versions are delivered one at a time, in completion order (an engine runs one
 * update session at a time), except part by part on a trainer-side sidecar: there each part's
 * relay waits for the engine-side sidecars' answer, which comes only once every part of the
 * version reached them, so the parts of a version are relayed at once.
 */
public final class VersionCoordinator implements AutoCloseable {

  private static final Logger LOG = Logger.getLogger(VersionCoordinator.class.getName());

  /** How long an abandoned session may take to end: its lease's resume (at most 60 s) and more. */
  public static final long ABANDONED_SESSION_BOUND_SECONDS = 75;

  /** A part slot held by one stream, from its header until it commits or fails. */
  public final class Part {
    private final Version version;
    private final PartSlots.Slot slot;
    private final int subCount;

    private Part(Version version, PartSlots.Slot slot, int subCount) {
      this.version = version;
      this.slot = slot;
      this.subCount = subCount;
    }

    public String version() {
      return version.id;
    }

    public int index() {
      return slot.part();
    }

    /** Which stream of its part this is, 0 &lt;= sub &lt; {@link #subCount()}. */
    public int sub() {
      return slot.sub();
    }

    public int subCount() {
      return subCount;
    }

    public Path directory() {
      return version.folder.path();
    }

    /**
     * A new set of staged shards {@code base*.safetensors} for this part, in its version's
     * folder.
     */
    public ShardSet shardSet(String base) throws IOException {
      return version.folder.shardSet(base);
    }

    /** Names a tensor for this version; false when another part already sent it. */
    public boolean claimTensor(String name) {
      synchronized (VersionCoordinator.this) {
        return version.tensorNames.add(name);
      }
    }

    /** Tensors named so far in this version, by all its parts. */
    public int tensorCount() {
      synchronized (VersionCoordinator.this) {
        return version.tensorNames.size();
      }
    }

    /**
     * Counts {@code bytes} more towards the version's size; false (and nothing counted) when that
     * would exceed {@code max}.
     */
    public boolean reserveBytes(long bytes, long max) {
      synchronized (VersionCoordinator.this) {
        if (version.bytes + bytes > max || version.bytes + bytes < 0) {
          return false;
        }
        version.bytes += bytes;
        return true;
      }
    }

    /** Non-null once the version was aborted (by another part or the timeout). */
    public Status abortedWith() {
      synchronized (VersionCoordinator.this) {
        return version.aborted;
      }
    }

    /**
     * This part failed (its files are gone): forget it so that it can be sent again. A version
     * left with no part received or receiving is dropped at once.
     */
    public void fail(Set<String> claimedTensors, long reservedBytes) {
      boolean drop;
      synchronized (VersionCoordinator.this) {
        version.slots.forget(slot);
        version.tensorNames.removeAll(claimedTensors);
        version.bytes -= reservedBytes;
        drop = version.slots.empty()
            && inProgress.get(version.key) == version;
        if (drop) {
          inProgress.remove(version.key);
          version.timeout.cancel();
        }
      }
      if (drop) {
        version.folder.drop();
      }
      version.folder.removeWriter();
    }

    /** This part is complete; {@code listener} is told how the version ends. */
    public void commit(PartResult result, VersionListener listener) {
      boolean complete;
      Status aborted;
      synchronized (VersionCoordinator.this) {
        aborted = version.aborted;
        version.slots.ended(slot, aborted == null ? result : null);
        complete = false;
        if (aborted == null) {
          version.listeners.add(listener);
          complete = version.slots.complete();
        }
        if (complete) {
          delivering++;
          inProgress.remove(version.key);
          version.timeout.cancel();
          version.lastCommitNanos = clock.nanoTime();
        }
      }
      version.folder.removeWriter();
      if (aborted != null) {
        listener.failed(aborted);
      } else if (complete) {
        deliveries.execute(() -> deliver(version));
      }
    }
  }

  private final class Version {
    final String id;
    /** The key in {@link #inProgress} and the staged folder's name: id, or id.part-N per part. */
    final String key;
    /** Parts this coordinator gathers: all of the version, or 1 when parts go on one by one. */
    final int partCount;
    /** The version's part count across all senders (as the header said). */
    final int globalCount;
    final VersionFolder folder;
    final long firstHeaderNanos = clock.nanoTime();
    final PartSlots slots;
    final Set<String> tensorNames = new HashSet<>();
    /** Bytes of the tensors its parts declared. */
    long bytes;
    final List<VersionListener> listeners = new ArrayList<>();
    PipelineClock.Cancellable timeout;
    Status aborted;
    long lastCommitNanos;

    Version(String id, String key, int partCount, int globalCount, VersionFolder folder) {
      this.id = id;
      this.key = key;
      this.partCount = partCount;
      this.globalCount = globalCount;
      this.folder = folder;
      this.slots = new PartSlots(partCount);
    }
  }

  /**
   * Progress of one version, for status: the parts every sub-part of which committed, and the
   * parts with a stream being received.
   */
  public record Progress(String version, int partCount, List<Integer> committed,
      List<Integer> receiving) {}

  private final StagingArea staging;
  private final VersionDelivery delivery;
  private final Duration partTimeout;
  private final boolean partByPart;
  private final PipelineClock clock;
  private final Map<String, Version> inProgress = new LinkedHashMap<>();
  /** Versions complete and queued or being delivered. */
  private int delivering;
  private final ExecutorService deliveries;

  /**
   * @param partByPart deliver each part as soon as it commits instead of gathering all parts of
   *     a version (a trainer-side sidecar: it holds one sender's part; the engine-side sidecars
   *     gather)
   */
  public VersionCoordinator(StagingArea staging, VersionDelivery delivery, Duration partTimeout,
      boolean partByPart, PipelineClock clock) {
    this.staging = staging;
    this.delivery = delivery;
    this.partTimeout = partTimeout;
    this.partByPart = partByPart;
    this.clock = clock;
    java.util.concurrent.ThreadFactory named = r -> {
      Thread t = new Thread(r, "weightsync-deliver");
      t.setDaemon(true);
      return t;
    };
    this.deliveries = partByPart ? Executors.newCachedThreadPool(named)
        : Executors.newSingleThreadExecutor(named);
  }

  /** Where version outcomes are told; set once, before the server starts. */
  public void events(VersionEvents e) {
    delivery.events(e);
  }

  /** Registers a part of {@code version} sent over one stream; see the next method. */
  public Part open(String versionId, int partIndex, int partCount) throws StatusException {
    return open(versionId, partIndex, partCount, 0, 1);
  }

  /**
   * Registers sub-part {@code sub} of {@code subCount} of a part of {@code version}; refused when
   * it conflicts with what is known (another part count, another sub-part count for this part, a
   * stream already committed or being received).
   */
  public synchronized Part open(String versionId, int partIndex, int partCount, int sub,
      int subCount) throws StatusException {
    String key = partByPart ? StagingArea.partFolder(versionId, partIndex) : versionId;
    Version v = inProgress.get(key);
    if (v == null) {
      VersionFolder folder;
      try {
        folder = staging.open(key);
      } catch (IOException e) {
        throw Status.INTERNAL.withDescription("cannot create a staging folder: " + e.getMessage())
            .asException();
      }
      v = new Version(versionId, key, partByPart ? 1 : partCount, partCount, folder);
      Version started = v;
      v.timeout = clock.after(partTimeout, () -> timeOut(started));
      inProgress.put(key, v);
    } else if (v.globalCount != partCount) {
      throw Status.ABORTED.withDescription("version " + versionId + " has " + v.globalCount
          + " parts, but this header says " + partCount).asException();
    }
    PartSlots.Slot slot = v.slots.open(versionId, partIndex, sub, subCount);
    try {
      v.folder.addWriter(); // cannot fail: the folder of a version in progress is not dropped
    } catch (IOException e) {
      v.slots.forget(slot);
      throw Status.INTERNAL.withDescription(e.getMessage()).asException();
    }
    return new Part(v, slot, subCount);
  }

  private void timeOut(Version v) {
    List<VersionListener> waiting;
    synchronized (this) {
      if (inProgress.get(v.key) != v) {
        return; // completed or dropped while this timeout was on its way
      }
      inProgress.remove(v.key);
      Set<Integer> missing = partByPart ? v.slots.receivingParts() : v.slots.missingParts();
      v.aborted = Status.DEADLINE_EXCEEDED.withDescription("version " + v.id + " aborted: part(s) "
          + missing + " of " + v.globalCount + " did not arrive within " + partTimeout.toSeconds()
          + " s; the engines keep serving their previous version");
      waiting = List.copyOf(v.listeners);
    }
    LOG.warning(v.aborted.getDescription());
    delivery.events().updateFailed("deadline_exceeded",
        (clock.nanoTime() - v.firstHeaderNanos) / 1e9);
    v.folder.drop(); // at once, or when the parts still being written fail
    waiting.forEach(l -> l.failed(v.aborted));
  }

  private void deliver(Version v) {
    try {
      List<PartResult> parts = v.slots.results();
      delivery.deliver(new VersionDelivery.Gathered(v.id, v.key,
          partByPart ? parts.get(0).partIndex() : 0, partByPart ? v.globalCount : 1, v.folder,
          parts, v.firstHeaderNanos, v.lastCommitNanos), v.listeners);
    } finally {
      synchronized (this) {
        delivering--;
      }
    }
  }

  /** Versions being received or delivered. */
  public synchronized int inFlight() {
    return inProgress.size() + delivering;
  }

  public List<EngineAdapter> engines() {
    return delivery.engines();
  }

  /** The version {@code engine} failed, when it has not loaded one since (it serves an older one). */
  public String outOfDate(String engine) {
    return delivery.outOfDate(engine);
  }

  public String lastLoaded() {
    return delivery.lastLoaded();
  }

  public synchronized List<Progress> progress() {
    List<Progress> out = new ArrayList<>();
    for (Version v : inProgress.values()) {
      out.add(new Progress(v.id, v.globalCount, List.copyOf(v.slots.committedParts()),
          List.copyOf(v.slots.receivingParts())));
    }
    return out;
  }

  @Override
  public void close() {
    close(Duration.ZERO);
  }

  /**
   * Stops: versions being delivered get {@code grace} to finish; then each engine's calls in
   * flight are abandoned, so that each session ends now through its lease (an engine whose weights
   * are untouched is resumed, one possibly mixed stays paused and recorded for the next start).
   * Nothing is interrupted: a resume is never cut short. Returns what it had to do (empty when
   * every session finished in time), for a process whose logging may already be shut down.
   */
  public String close(Duration grace) {
    clock.close();
    deliveries.shutdown();
    String report = "";
    try {
      if (!deliveries.awaitTermination(grace.toMillis(), TimeUnit.MILLISECONDS)) {
        report = "engine sessions still running after the shutdown grace: ending them through"
            + " their leases";
        LOG.warning(report);
        delivery.abandonSessions();
        deliveries.awaitTermination(ABANDONED_SESSION_BOUND_SECONDS, TimeUnit.SECONDS);
        report += "; " + delivery.engineStates();
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    delivery.close();
    return report;
  }
}
