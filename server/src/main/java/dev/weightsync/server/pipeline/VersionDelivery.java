package dev.weightsync.server.pipeline;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.weightsync.core.quant.QuantError;
import dev.weightsync.core.quant.QuantScheme;
import dev.weightsync.core.quant.QuantizationConfigs;
import dev.weightsync.core.quant.TensorPlan;
import dev.weightsync.server.engine.Delivery;
import dev.weightsync.server.engine.EngineAdapter;
import dev.weightsync.server.engine.EngineOutcome;
import dev.weightsync.server.engine.EngineResult;
import dev.weightsync.server.engine.EngineSet;
import dev.weightsync.server.engine.EngineState;
import dev.weightsync.server.stage.ShardSpool;
import dev.weightsync.server.stage.StagingArea;
import dev.weightsync.server.stage.VersionFolder;
import io.grpc.Status;
import java.io.IOException;
import java.net.UnknownHostException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.logging.Logger;

/**
 * What happens to a version once all its parts are in: the parts are aggregated, the folder is
 * published, every engine is called at once, the delivery policy decides, and the outcome goes to
 * every part's caller, to the events and to the log. Keeps who is out of date and what was last
 * loaded.
 *
 * <p>Called by one thread at a time (the coordinator delivers versions in completion order).
 */
public final class VersionDelivery implements AutoCloseable {

  private static final Logger LOG = Logger.getLogger(VersionDelivery.class.getName());

  /**
   * A version whose parts are all committed. {@code partIndex}/{@code partCount} name which part
   * of the whole it is when parts are delivered one by one (else 0 of 1).
   */
  public record Gathered(String id, String key, int partIndex, int partCount, VersionFolder folder,
      List<PartResult> parts, long firstHeaderNanos, long lastCommitNanos) {}

  private final StagingArea staging;
  private final QuantScheme scheme;
  private final ObjectNode baseConfig;
  private final EngineSet engines;
  private final DeliveryPolicy policy;
  private final PipelineClock clock;
  private final ExecutorService engineCalls = Executors.newCachedThreadPool(r -> {
    Thread t = new Thread(r, "weightsync-engine");
    t.setDaemon(true);
    return t;
  });
  /** Engines that failed a version, with that version: they serve an older one. */
  private final Map<String, String> outOfDate = new ConcurrentHashMap<>();
  private volatile String lastLoaded = "";
  private volatile VersionEvents events = VersionEvents.NONE;

  public VersionDelivery(StagingArea staging, QuantScheme scheme, ObjectNode baseConfig,
      EngineSet engines, DeliveryPolicy policy, PipelineClock clock) {
    this.staging = staging;
    this.scheme = scheme;
    this.baseConfig = baseConfig;
    this.engines = engines;
    this.policy = policy;
    this.clock = clock;
  }

  /** Where outcomes are told; set once, before the first version. */
  void events(VersionEvents e) {
    this.events = e;
  }

  VersionEvents events() {
    return events;
  }

  /** Publishes {@code v}, calls the engines and tells each listener how it ended. */
  void deliver(Gathered v, List<VersionListener> listeners) {
    try {
      Aggregate all = new Aggregate(v.parts());
      long stageStart = clock.nanoTime();
      Path staged = v.folder().publish(v.key(), all.shards, configFor(all.plans, all.relayedConfigs,
          v.parts().size()));
      double stageSeconds = (clock.nanoTime() - stageStart) / 1e9;

      long engineStart = clock.nanoTime();
      List<EngineResult> results = callEngines(new Delivery(staged, v.id(), v.partIndex(),
          v.partCount()));
      double engineSeconds = (clock.nanoTime() - engineStart) / 1e9;
      for (EngineResult r : results) {
        boolean behind = r.outcome() != EngineOutcome.LOADED;
        if (behind) {
          outOfDate.put(r.engine(), v.id());
        } else {
          outOfDate.remove(r.engine());
        }
        events.engineOutOfDate(r.engine(), behind);
      }
      long loaded = results.stream().filter(r -> r.outcome() == EngineOutcome.LOADED).count();
      boolean succeeded = loaded >= policy.required(results.size());
      if (succeeded) {
        lastLoaded = v.id();
      }
      prune();
      VersionOutcome outcome = new VersionOutcome(v.id(), staged, all.bytesIn, all.bytesOut,
          all.plans.size(), all.tensorsOut, all.error,
          (v.lastCommitNanos() - v.firstHeaderNanos()) / 1e9, all.quantizeSeconds, stageSeconds,
          engineSeconds, (clock.nanoTime() - v.firstHeaderNanos()) / 1e9, results);
      LOG.info(() -> summary(outcome));
      events.versionDelivered(outcome);
      if (succeeded) {
        listeners.forEach(l -> l.completed(outcome));
      } else {
        Status status = enginesFailed(v.id(), results);
        listeners.forEach(l -> l.enginesFailed(outcome, status));
      }
    } catch (IOException | RuntimeException e) {
      LOG.severe("version " + v.id() + " could not be delivered: " + e);
      v.folder().drop();
      Status s = (e instanceof UnknownHostException ? Status.UNAVAILABLE : Status.INTERNAL)
          .withDescription("version " + v.id() + " could not be staged or delivered: "
              + e.getMessage() + "; no engine was called");
      events.updateFailed("internal", (clock.nanoTime() - v.firstHeaderNanos()) / 1e9);
      listeners.forEach(l -> l.failed(s));
    }
  }

  /** Old versions go once a new one was delivered; failing to delete one fails nothing. */
  private void prune() {
    try {
      staging.prune();
    } catch (IOException e) {
      LOG.warning("could not delete old versions in " + staging.root() + ": " + e.getMessage());
    }
  }

  /** The parts' contributions, summed. */
  private static final class Aggregate {
    final List<TensorPlan> plans = new ArrayList<>();
    final List<ShardSpool> shards = new ArrayList<>();
    final List<ObjectNode> relayedConfigs = new ArrayList<>();
    long bytesIn;
    long bytesOut;
    int tensorsOut;
    double quantizeSeconds;
    QuantError error = QuantError.NONE;

    Aggregate(List<PartResult> parts) {
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
    }
  }

  private List<EngineResult> callEngines(Delivery delivery) throws IOException {
    List<CompletableFuture<EngineResult>> calls = new ArrayList<>();
    for (EngineAdapter e : engines.forVersion()) {
      calls.add(CompletableFuture.supplyAsync(() -> updateOrReport(e, delivery), engineCalls));
    }
    return calls.stream().map(CompletableFuture::join).toList();
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

  private Status enginesFailed(String version, List<EngineResult> results) {
    List<EngineResult> failed = results.stream()
        .filter(r -> r.outcome() != EngineOutcome.LOADED).toList();
    return Status.INTERNAL.withDescription("version " + version + ": " + failed.size() + " of "
        + results.size() + " engine(s) failed (policy " + policy + " needs "
        + policy.required(results.size()) + "): " + failed.stream()
            .map(r -> r.engine() + " " + r.outcome() + ": " + r.message()).toList());
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

  private static String summary(VersionOutcome o) {
    return String.format(Locale.ROOT,
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

  /** Ends every engine session in flight through its lease (see {@link EngineAdapter#abandon}). */
  void abandonSessions() {
    engines.known().forEach(EngineAdapter::abandon);
  }

  /** The engines' states, for a shutdown report. */
  String engineStates() {
    return engines.known().stream().map(e -> e.name() + " " + e.state().state()).toList()
        .toString();
  }

  @Override
  public void close() {
    engineCalls.shutdown();
  }
}
