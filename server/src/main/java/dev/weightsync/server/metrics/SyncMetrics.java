package dev.weightsync.server.metrics;

import dev.weightsync.server.engine.EngineOutcome;
import dev.weightsync.server.engine.EngineResult;
import dev.weightsync.server.pipeline.VersionEvents;
import dev.weightsync.server.pipeline.VersionOutcome;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Timer;
import java.time.Duration;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.DoubleSupplier;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The sidecar's metrics. The Prometheus names (ARCHITECTURE.md) are a contract that dashboards
 * and alerts depend on: add, never rename. No label ever holds a tensor name or a version id.
 *
 * <ul>
 *   <li>{@code weightsync_update_duration_seconds{phase,outcome}}: histogram; phase = receive |
 *       quantize | stage | engine | total; outcome = success | engine_failed | the gRPC code of a
 *       refused or aborted part in lower case (invalid_argument, cancelled, deadline_exceeded...).
 *   <li>{@code weightsync_ingest_bytes_total}: bytes of tensor data received.
 *   <li>{@code weightsync_output_bytes_total}: bytes of tensor data staged for the engines.
 *   <li>{@code weightsync_tensors_total{direction="in"|"out"}}: tensors received / staged.
 *   <li>{@code weightsync_weight_version}: the last version loaded by every engine, as a number
 *       (the version itself when numeric, else its trailing digits, e.g. step-100 → 100; NaN
 *       when it has none).
 *   <li>{@code weightsync_weight_version_age_seconds}: time since that version loaded.
 *   <li>{@code weightsync_updates_in_flight}: versions being received or delivered.
 *   <li>{@code weightsync_engine_push_duration_seconds{engine,outcome}}: each engine's session.
 *   <li>{@code weightsync_engine_failures_total{engine,reason}}: failed sessions by failed step
 *       (pause, flush, begin, load, end, continue, confirm).
 *   <li>{@code weightsync_quantization_error{stat="max_abs"|"rel_rms"}}: of the last version.
 *   <li>{@code weightsync_staging_bytes}: bytes on disk under the staging folder.
 *   <li>{@code weightsync_quantizer_device{device}}: 1 for the device that quantizes.
 *   <li>{@code weightsync_engine_out_of_date{engine}}: 1 while an engine (or relay target) that
 *       failed a version serves an older one; 0 once a later version reached it.
 * </ul>
 */
public final class SyncMetrics implements VersionEvents {

  private static final Duration[] BUCKETS = {
      Duration.ofMillis(50), Duration.ofMillis(100), Duration.ofMillis(250),
      Duration.ofMillis(500), Duration.ofSeconds(1), Duration.ofMillis(2500),
      Duration.ofSeconds(5), Duration.ofSeconds(10), Duration.ofSeconds(30),
      Duration.ofSeconds(60), Duration.ofSeconds(120), Duration.ofSeconds(300),
      Duration.ofSeconds(600)};
  private static final Pattern TRAILING_DIGITS = Pattern.compile("(\\d+)$");

  private final MeterRegistry registry;
  private final Counter ingestBytes;
  private final Counter outputBytes;
  private final Counter tensorsIn;
  private final Counter tensorsOut;
  private final AtomicReference<Double> version = new AtomicReference<>(Double.NaN);
  private final AtomicLong loadedAtNanos = new AtomicLong();
  private final AtomicReference<Double> maxAbs = new AtomicReference<>(0.0);
  private final AtomicReference<Double> relRms = new AtomicReference<>(0.0);
  private final java.util.Map<String, AtomicLong> outOfDate = new java.util.concurrent.ConcurrentHashMap<>();

  public SyncMetrics(MeterRegistry registry, String device, DoubleSupplier inFlight,
      DoubleSupplier stagingBytes) {
    this.registry = registry;
    ingestBytes = Counter.builder("weightsync.ingest.bytes")
        .description("Bytes of tensor data received from trainers").register(registry);
    outputBytes = Counter.builder("weightsync.output.bytes")
        .description("Bytes of tensor data staged for the engines").register(registry);
    tensorsIn = Counter.builder("weightsync.tensors").tag("direction", "in")
        .description("Tensors received (in) and staged (out)").register(registry);
    tensorsOut = Counter.builder("weightsync.tensors").tag("direction", "out")
        .description("Tensors received (in) and staged (out)").register(registry);
    Gauge.builder("weightsync.weight.version", version, AtomicReference::get)
        .description("The last version loaded by every engine, as a number").register(registry);
    Gauge.builder("weightsync.weight.version.age.seconds", loadedAtNanos,
            t -> t.get() == 0 ? Double.NaN : (System.nanoTime() - t.get()) / 1e9)
        .description("Seconds since the last version loaded").register(registry);
    // Strong references: Micrometer holds gauge objects weakly, and these lambdas have no other owner.
    Gauge.builder("weightsync.updates.in.flight", inFlight, DoubleSupplier::getAsDouble)
        .strongReference(true).description("Versions being received or delivered").register(registry);
    Gauge.builder("weightsync.quantization.error", maxAbs, AtomicReference::get).tag("stat", "max_abs")
        .description("Quantization error of the last version").register(registry);
    Gauge.builder("weightsync.quantization.error", relRms, AtomicReference::get).tag("stat", "rel_rms")
        .description("Quantization error of the last version").register(registry);
    Gauge.builder("weightsync.staging.bytes", stagingBytes, DoubleSupplier::getAsDouble)
        .strongReference(true).description("Bytes on disk under the staging folder").register(registry);
    Gauge.builder("weightsync.staging.mapped.bytes", dev.weightsync.core.tensor.FileRegionSource::mappedBytes)
        .description("Bytes of spool and staged files mapped into memory now (unmapped as soon as"
            + " their work ends, so that a deleted file's pages are given back at once)")
        .register(registry);
    Gauge.builder("weightsync.quantizer.device", () -> 1).tag("device", device)
        .description("1 for the device that quantizes").register(registry);
  }

  public MeterRegistry registry() {
    return registry;
  }

  public void bytesReceived(long bytes) {
    ingestBytes.increment(bytes);
  }

  @Override
  public void versionDelivered(VersionOutcome o) {
    boolean loaded = o.engines().stream().allMatch(r -> r.outcome() == EngineOutcome.LOADED);
    String outcome = loaded ? "success" : "engine_failed";
    record("receive", outcome, o.receiveSeconds());
    record("quantize", outcome, o.quantizeSeconds());
    record("stage", outcome, o.stageSeconds());
    record("engine", outcome, o.engineSeconds());
    record("total", outcome, o.totalSeconds());
    outputBytes.increment(o.bytesOut());
    tensorsIn.increment(o.tensorsIn());
    tensorsOut.increment(o.tensorsOut());
    maxAbs.set(o.error().maxAbs());
    relRms.set(o.error().relRms());
    for (EngineResult r : o.engines()) {
      Timer.builder("weightsync.engine.push.duration").tag("engine", r.engine())
          .tag("outcome", r.outcome().name().toLowerCase(java.util.Locale.ROOT))
          .serviceLevelObjectives(BUCKETS).description("One engine's update session")
          .register(registry).record(Duration.ofNanos((long) (r.seconds() * 1e9)));
      if (r.outcome() != EngineOutcome.LOADED) {
        Counter.builder("weightsync.engine.failures").tag("engine", r.engine())
            .tag("reason", r.failedStep()).description("Failed engine sessions by failed step")
            .register(registry).increment();
      }
    }
    if (loaded) {
      version.set(numeric(o.version()));
      loadedAtNanos.set(System.nanoTime());
    }
  }

  @Override
  public void engineOutOfDate(String engine, boolean behind) {
    outOfDate.computeIfAbsent(engine, e -> {
      AtomicLong v = new AtomicLong();
      Gauge.builder("weightsync.engine.out.of.date", v, AtomicLong::get).tag("engine", e)
          .description("1 while an engine that failed a version serves an older one")
          .register(registry);
      return v;
    }).set(behind ? 1 : 0);
  }

  /** The states {@code weightsync_engine_state} has a series for. */
  public static final java.util.List<String> ENGINE_STATES = java.util.List.of("UNKNOWN", "SERVING",
      "PAUSED_CLEAN", "MAYBE_MIXED", "SERVING_MIXED", "UNREACHABLE");

  /**
   * {@code weightsync_engine_state{engine,state}}: 1 for the state {@code state} reports for the
   * engine now (the one status reports), 0 for the others.
   */
  public void engineState(String engine, java.util.function.Supplier<String> state) {
    for (String s : ENGINE_STATES) {
      Gauge.builder("weightsync.engine.state", () -> s.equals(state.get()) ? 1 : 0)
          .tag("engine", engine).tag("state", s)
          .description("1 for what the engine is in: SERVING, PAUSED_CLEAN, MAYBE_MIXED ...")
          .register(registry);
    }
  }

  /** An operator resumed {@code engine} ({@code weightsync resume}), over mixed weights or not. */
  public void operatorResume(String engine, boolean acceptedMixed) {
    io.micrometer.core.instrument.Counter.builder("weightsync.engine.operator.resumes")
        .tag("engine", engine).tag("accept_mixed", String.valueOf(acceptedMixed))
        .description("Engines resumed by an operator's weightsync resume").register(registry)
        .increment();
  }

  /** Also a part refused, with its status code as the outcome. */
  @Override
  public void updateFailed(String outcome, double seconds) {
    record("total", outcome, seconds);
  }

  private void record(String phase, String outcome, double seconds) {
    Timer.builder("weightsync.update.duration").tag("phase", phase).tag("outcome", outcome)
        .serviceLevelObjectives(BUCKETS).description("Weight update duration by phase")
        .register(registry).record(Duration.ofNanos((long) (seconds * 1e9)));
  }

  static double numeric(String version) {
    try {
      return Double.parseDouble(version);
    } catch (NumberFormatException e) {
      Matcher m = TRAILING_DIGITS.matcher(version);
      return m.find() ? Double.parseDouble(m.group(1)) : Double.NaN;
    }
  }
}
