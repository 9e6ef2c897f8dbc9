package dev.weightsync.server.pipeline;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.weightsync.core.quant.QuantError;
import dev.weightsync.core.quant.QuantScheme;
import dev.weightsync.core.quant.QuantizationConfigs;
import dev.weightsync.core.quant.TensorPlan;
import dev.weightsync.core.checkpoint.CheckpointConverter;
import dev.weightsync.server.engine.Delivery;
import dev.weightsync.server.engine.EngineAdapter;
import dev.weightsync.server.engine.EngineSet;
import dev.weightsync.server.engine.EngineOutcome;
import dev.weightsync.server.engine.EngineResult;
import dev.weightsync.server.engine.EngineState;
import dev.weightsync.server.metrics.SyncMetrics;
import dev.weightsync.server.stage.ShardSpool;
import dev.weightsync.server.stage.StagingArea;
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
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import java.util.logging.Logger;

/**
 * Makes weight versions atomic. Parts of a version register here as their streams open; a part
 * that fails is forgotten (its files deleted) so it can be retried; when every part has
 * committed, the version is published in the staging area and handed to every engine, and every
 * part's caller gets the outcome. Parts that do not all arrive within the part timeout abort the
 * version: nothing reaches an engine.
 *
 * <p>Thread-safe. Versions are delivered to the engines one at a time, in completion order.
 */
public final class VersionCoordinator implements AutoCloseable {

  private static final Logger LOG = Logger.getLogger(VersionCoordinator.class.getName());

  /** A part slot held by one stream. */
  public final class Part {
    private final Version version;
    private final int index;

    private Part(Version version, int index) {
      this.version = version;
      this.index = index;
    }

    public String version() {
      return version.id;
    }

    public int index() {
      return index;
    }

    public Path directory() {
      return version.directory;
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
     * This part failed: forget it so that it can be sent again. A version left with no part
     * received or receiving is dropped at once.
     */
    public void fail(Set<String> claimedTensors, long reservedBytes) {
      boolean drop;
      synchronized (VersionCoordinator.this) {
        version.receiving.remove(index);
        version.tensorNames.removeAll(claimedTensors);
        version.bytes -= reservedBytes;
        drop = version.receiving.isEmpty() && version.committed.isEmpty()
            && inProgress.get(version.key) == version;
        if (drop) {
          inProgress.remove(version.key);
          version.timeout.cancel(false);
        }
      }
      if (drop) {
        discard(version);
      }
    }

    /** This part is complete; {@code listener} is told how the version ends. */
    public void commit(PartResult result, VersionListener listener) {
      boolean complete;
      synchronized (VersionCoordinator.this) {
        version.receiving.remove(index);
        if (version.aborted != null) {
          listener.failed(version.aborted);
          return;
        }
        version.committed.put(index, result);
        version.listeners.add(listener);
        complete = version.committed.size() == version.partCount;
        if (complete) {
          delivering.incrementAndGet();
          inProgress.remove(version.key);
          version.timeout.cancel(false);
          version.lastCommitNanos = System.nanoTime();
        }
      }
      if (complete) {
        delivery.execute(() -> deliver(version));
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
    final Path directory;
    final long firstHeaderNanos = System.nanoTime();
    final Set<Integer> receiving = new HashSet<>();
    final Map<Integer, PartResult> committed = new TreeMap<>();
    final Set<String> tensorNames = new HashSet<>();
    /** Bytes of the tensors its parts declared. */
    long bytes;
    final List<VersionListener> listeners = new ArrayList<>();
    ScheduledFuture<?> timeout;
    Status aborted;
    long lastCommitNanos;

    Version(String id, String key, int partCount, int globalCount, Path directory) {
      this.id = id;
      this.key = key;
      this.partCount = partCount;
      this.globalCount = globalCount;
      this.directory = directory;
    }
  }

  /** Progress of one version, for status. */
  public record Progress(String version, int partCount, List<Integer> committed,
      List<Integer> receiving) {}

  private final StagingArea staging;
  private final QuantScheme scheme;
  private final ObjectNode baseConfig;
  private final EngineSet engines;
  private final Duration partTimeout;
  private final DeliveryPolicy policy;
  private final boolean partByPart;
  /** Engines that failed a version, with that version: they serve an older one. */
  private final Map<String, String> outOfDate = new java.util.concurrent.ConcurrentHashMap<>();
  private final Map<String, Version> inProgress = new LinkedHashMap<>();
  private final ScheduledExecutorService timer = Executors.newSingleThreadScheduledExecutor(
      daemon("weightsync-part-timeout"));
  private final ExecutorService delivery = Executors.newSingleThreadExecutor(
      daemon("weightsync-deliver"));
  private final ExecutorService engineCalls = Executors.newCachedThreadPool(daemon("weightsync-engine"));
  private volatile String lastLoaded = "";
  private final java.util.concurrent.atomic.AtomicInteger delivering =
      new java.util.concurrent.atomic.AtomicInteger();
  private SyncMetrics metrics;

  /**
   * @param partByPart deliver each part as soon as it commits instead of gathering all parts of
   *     a version (a trainer-side sidecar: it holds one sender's part; the engine-side sidecars
   *     gather)
   */
  public VersionCoordinator(StagingArea staging, QuantScheme scheme, ObjectNode baseConfig,
      EngineSet engines, Duration partTimeout, DeliveryPolicy policy, boolean partByPart) {
    this.staging = staging;
    this.scheme = scheme;
    this.baseConfig = baseConfig;
    this.engines = engines;
    this.partTimeout = partTimeout;
    this.policy = policy;
    this.partByPart = partByPart;
  }

  /** Gathers all parts of each version and delivers to fixed engines, all of which must load. */
  public VersionCoordinator(StagingArea staging, QuantScheme scheme, ObjectNode baseConfig,
      List<EngineAdapter> engines, Duration partTimeout) {
    this(staging, scheme, baseConfig, EngineSet.of(engines), partTimeout, DeliveryPolicy.ALL,
        false);
  }

  private static java.util.concurrent.ThreadFactory daemon(String name) {
    return r -> {
      Thread t = new Thread(r, name);
      t.setDaemon(true);
      return t;
    };
  }

  /** Registers a part of {@code version}; refused when it conflicts with what is known. */
  public synchronized Part open(String versionId, int partIndex, int partCount)
      throws StatusException {
    String key = partByPart ? versionId + ".part-" + partIndex : versionId;
    Version v = inProgress.get(key);
    if (v == null) {
      Path dir;
      try {
        dir = staging.newTemporary(key);
      } catch (IOException e) {
        throw Status.INTERNAL.withDescription("cannot create a staging folder: " + e.getMessage())
            .asException();
      }
      v = new Version(versionId, key, partByPart ? 1 : partCount, partCount, dir);
      Version started = v;
      v.timeout = timer.schedule(() -> timeOut(started), partTimeout.toMillis(), TimeUnit.MILLISECONDS);
      inProgress.put(key, v);
    } else if (v.globalCount != partCount) {
      throw Status.ABORTED.withDescription("version " + versionId + " has " + v.globalCount
          + " parts, but this header says " + partCount).asException();
    }
    if (v.committed.containsKey(partIndex)) {
      throw Status.ABORTED.withDescription("part " + partIndex + " of version " + versionId
          + " was already committed").asException();
    }
    if (!v.receiving.add(partIndex)) {
      throw Status.ABORTED.withDescription("part " + partIndex + " of version " + versionId
          + " is being received on another stream").asException();
    }
    return new Part(v, partIndex);
  }

  private void timeOut(Version v) {
    List<VersionListener> waiting;
    synchronized (this) {
      if (inProgress.get(v.key) != v) {
        return;
      }
      inProgress.remove(v.key);
      List<Integer> missing = new ArrayList<>();
      if (partByPart) {
        missing.addAll(v.receiving);
      } else {
        for (int i = 0; i < v.partCount; i++) {
          if (!v.committed.containsKey(i)) {
            missing.add(i);
          }
        }
      }
      v.aborted = Status.DEADLINE_EXCEEDED.withDescription("version " + v.id + " aborted: part(s) "
          + missing + " of " + v.globalCount + " did not arrive within " + partTimeout.toSeconds()
          + " s; the engines keep serving their previous version");
      waiting = List.copyOf(v.listeners);
    }
    LOG.warning(v.aborted.getDescription());
    if (metrics != null) {
      metrics.updateFailed("deadline_exceeded", (System.nanoTime() - v.firstHeaderNanos) / 1e9);
    }
    discard(v);
    waiting.forEach(l -> l.failed(v.aborted));
  }

  /**
   * An adapter that throws (a bug of ours) still has an engine behind it that was called: its
   * result says so, with the state the adapter recorded, instead of "no engine was called".
   */
  private static EngineResult updateOrReport(EngineAdapter e, Delivery d) {
    try {
      return e.update(d);
    } catch (RuntimeException | Error bug) {
      LOG.severe(e.name() + ": the engine adapter failed: " + bug);
      EngineState s = e.state();
      return new EngineResult(e.name(), EngineOutcome.FAILED_PAUSED, "", "internal error while"
          + " updating the engine (" + bug + "); it is left as recorded: " + s.state()
          + (s.lastError().isEmpty() ? "" : " (" + s.lastError() + ")"), 0, "internal");
    }
  }

  private void discard(Version v) {
    try {
      CheckpointConverter.deleteTree(v.directory);
    } catch (IOException e) {
      LOG.warning("could not delete " + v.directory + ": " + e.getMessage());
    }
  }

  private void deliver(Version v) {
    List<PartResult> parts = new ArrayList<>(v.committed.values());
    try {
      long stageStart = System.nanoTime();
      List<TensorPlan> plans = new ArrayList<>();
      List<ShardSpool> shards = new ArrayList<>();
      List<ObjectNode> relayedConfigs = new ArrayList<>();
      long bytesIn = 0;
      long bytesOut = 0;
      int tensorsOut = 0;
      double quantizeSeconds = 0;
      QuantError error = QuantError.NONE;
      for (PartResult p : parts) {
        plans.addAll(p.plans());
        shards.addAll(p.shards());
        bytesIn += p.bytesIn();
        bytesOut += p.bytesOut();
        error = error.plus(p.error());
        quantizeSeconds += p.quantizeSeconds();
        tensorsOut += p.shards().stream().mapToInt(s -> s.tensors().size()).sum();
        if (p.relayed()) {
          relayedConfigs.add(p.relayedConfig());
        }
      }
      ObjectNode config = configFor(plans, relayedConfigs, parts.size());
      Path staged = staging.publish(v.directory, v.key, shards, config);
      double stageSeconds = (System.nanoTime() - stageStart) / 1e9;

      long engineStart = System.nanoTime();
      List<EngineAdapter> targets = engines.forVersion();
      int partIndex = partByPart ? parts.get(0).partIndex() : 0;
      Delivery delivery = new Delivery(staged, v.id, partIndex, partByPart ? v.globalCount : 1);
      List<CompletableFuture<EngineResult>> calls = new ArrayList<>();
      for (EngineAdapter e : targets) {
        calls.add(CompletableFuture.supplyAsync(() -> updateOrReport(e, delivery), engineCalls));
      }
      List<EngineResult> results = calls.stream().map(CompletableFuture::join).toList();
      double engineSeconds = (System.nanoTime() - engineStart) / 1e9;
      for (EngineResult r : results) {
        boolean behind = r.outcome() != EngineOutcome.LOADED;
        if (behind) {
          outOfDate.put(r.engine(), v.id);
        } else {
          outOfDate.remove(r.engine());
        }
        if (metrics != null) {
          metrics.engineOutOfDate(r.engine(), behind);
        }
      }
      long loaded = results.stream().filter(r -> r.outcome() == EngineOutcome.LOADED).count();
      boolean succeeded = loaded >= policy.required(results.size());
      if (succeeded) {
        lastLoaded = v.id;
      }
      staging.prune();
      VersionOutcome outcome = new VersionOutcome(v.id, staged, bytesIn, bytesOut, plans.size(),
          tensorsOut, error, (v.lastCommitNanos - v.firstHeaderNanos) / 1e9, quantizeSeconds,
          stageSeconds, engineSeconds, (System.nanoTime() - v.firstHeaderNanos) / 1e9, results);
      LOG.info(() -> summary(outcome));
      if (metrics != null) {
        metrics.versionDelivered(outcome);
      }
      List<EngineResult> failed = results.stream()
          .filter(r -> r.outcome() != EngineOutcome.LOADED).toList();
      Status status = Status.INTERNAL.withDescription("version " + v.id + ": " + failed.size()
          + " of " + results.size() + " engine(s) failed (policy " + policy + " needs "
          + policy.required(results.size()) + "): " + failed.stream()
              .map(r -> r.engine() + " " + r.outcome() + ": " + r.message()).toList());
      for (VersionListener l : v.listeners) {
        if (succeeded) {
          l.completed(outcome);
        } else {
          l.enginesFailed(outcome, status);
        }
      }
    } catch (IOException | RuntimeException e) {
      LOG.severe("version " + v.id + " could not be delivered: " + e);
      discard(v);
      Status s = (e instanceof java.net.UnknownHostException ? Status.UNAVAILABLE : Status.INTERNAL)
          .withDescription("version " + v.id + " could not be staged or delivered: "
              + e.getMessage() + "; no engine was called");
      if (metrics != null) {
        metrics.updateFailed("internal", (System.nanoTime() - v.firstHeaderNanos) / 1e9);
      }
      v.listeners.forEach(l -> l.failed(s));
    } finally {
      delivering.decrementAndGet();
    }
  }

  /**
   * The staged config.json: for parts this sidecar quantized, built from their plans; for parts
   * relayed already quantized, the engine's base config with the parts' quantization_configs
   * merged.
   */
  private ObjectNode configFor(List<TensorPlan> plans, List<ObjectNode> relayed, int parts) {
    if (relayed.isEmpty()) {
      return QuantizationConfigs.outputConfig(baseConfig, scheme, plans);
    }
    if (relayed.size() != parts) {
      throw new IllegalArgumentException("the version mixes relayed (already quantized) parts"
          + " with source parts");
    }
    ObjectNode out = baseConfig.deepCopy();
    ObjectNode qc = QuantizationConfigs.merge(relayed);
    if (qc == null) {
      out.remove("quantization_config");
    } else {
      out.set("quantization_config", qc);
    }
    return out;
  }

  /** Where version outcomes are counted; set once, before the server starts. */
  public void metrics(SyncMetrics m) {
    this.metrics = m;
  }

  /** Versions being received or delivered. */
  public synchronized int inFlight() {
    return inProgress.size() + delivering.get();
  }

  private static String summary(VersionOutcome o) {
    return String.format(java.util.Locale.ROOT,
        "version=%s outcome=%s tensors_in=%d tensors_out=%d bytes_in=%d bytes_out=%d"
            + " receive_s=%.3f quantize_s=%.3f stage_s=%.3f engine_s=%.3f total_s=%.3f engines=%s",
        o.version(), o.engines().stream().allMatch(r -> r.outcome() == EngineOutcome.LOADED)
            ? "loaded" : "engine_failed",
        o.tensorsIn(), o.tensorsOut(), o.bytesIn(), o.bytesOut(), o.receiveSeconds(),
        o.quantizeSeconds(), o.stageSeconds(), o.engineSeconds(), o.totalSeconds(),
        o.engines().stream().map(r -> r.engine() + ":" + r.outcome()).toList());
  }

  public List<EngineAdapter> engines() {
    return engines.known();
  }

  /** The version {@code engine} failed, when it has not loaded one since (it serves an older one). */
  public String outOfDate(String engine) {
    return outOfDate.get(engine);
  }

  public String lastLoaded() {
    return lastLoaded;
  }

  public synchronized List<Progress> progress() {
    List<Progress> out = new ArrayList<>();
    for (Version v : inProgress.values()) {
      out.add(new Progress(v.id, v.globalCount, List.copyOf(v.committed.keySet()),
          List.copyOf(new java.util.TreeSet<>(v.receiving))));
    }
    return out;
  }

  @Override
  public void close() {
    close(java.time.Duration.ZERO);
  }

  /**
   * Stops: versions being delivered get {@code grace} to finish; then each engine's calls in
   * flight are abandoned, so that each session ends now through its lease (an engine whose weights
   * are untouched is resumed, one possibly mixed stays paused and recorded for the next start).
   * Nothing is interrupted: a resume is never cut short. Returns what it had to do (empty when
   * every session finished in time), for a process whose logging may already be shut down.
   */

  public String close(java.time.Duration grace) {
    timer.shutdownNow();
    delivery.shutdown();
    String report = "";
    try {
      if (!delivery.awaitTermination(grace.toMillis(), TimeUnit.MILLISECONDS)) {
        report = "engine sessions still running after the shutdown grace: ending them through"
            + " their leases";
        LOG.warning(report);
        engines.known().forEach(EngineAdapter::abandon);
        delivery.awaitTermination(ABANDONED_SESSION_BOUND_SECONDS, TimeUnit.SECONDS);
        report += "; " + engines.known().stream().map(e -> e.name() + " " + e.state().state())
            .toList();
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    engineCalls.shutdown();
    return report;
  }

  /** How long an abandoned session may take to end: its lease's resume (at most 60 s) and more. */
  public static final long ABANDONED_SESSION_BOUND_SECONDS = 75;
}
