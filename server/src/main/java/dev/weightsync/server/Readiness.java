package dev.weightsync.server;

import dev.weightsync.server.engine.EngineAdapter;
import dev.weightsync.server.engine.LeasedEngineAdapter;
import dev.weightsync.server.stage.StagingArea;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.protobuf.services.HealthStatusManager;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;

/**
 * Whether the sidecar is ready, told through gRPC health (the service name; "" is liveness) and
 * {@code /readyz}: not while engines a previous run left paused are being recovered, nor while
 * an engine does not answer its health check, nor once shutting down. Checked every 5 s and on
 * every question.
 */
final class Readiness implements AutoCloseable {

  /** The gRPC health service name that reports readiness. */
  static final String SERVICE = Sidecar.SERVICE;

  private final HealthStatusManager health = new HealthStatusManager();
  private final List<EngineAdapter> engines;
  private final ScheduledExecutorService timer = Executors.newSingleThreadScheduledExecutor(r -> {
    Thread t = new Thread(r, "weightsync-readiness");
    t.setDaemon(true);
    return t;
  });
  private volatile Set<String> unreachable = Set.of();
  /** Engines whose recovery after a restart has not finished (not ready until it has). */
  private volatile int recovering;
  private boolean closing;

  Readiness(List<EngineAdapter> engines) {
    this.engines = engines;
  }

  HealthStatusManager health() {
    return health;
  }

  /**
   * Starts: engines a previous run of this sidecar left paused or possibly mixed (it died
   * mid-update) are recovered on their own threads before this sidecar reports ready; a version
   * arriving meanwhile waits for its engine (one session or recovery at a time per engine).
   */
  void start(StagingArea staging) {
    List<Thread> recoveries = new ArrayList<>();
    for (EngineAdapter e : engines) {
      if (e instanceof LeasedEngineAdapter leased) {
        recoveries.add(new Thread(() -> leased.recover(staging::newest), "weightsync-recovery"));
      }
    }
    recovering = recoveries.size();
    for (Thread t : recoveries) {
      t.setDaemon(true);
      t.start();
    }
    Thread watch = new Thread(() -> {
      for (Thread t : recoveries) {
        try {
          t.join();
        } catch (InterruptedException ie) {
          return;
        }
      }
      recovering = 0;
      refresh();
    }, "weightsync-recovery-watch");
    watch.setDaemon(true);
    watch.start();
    health.setStatus("", ServingStatus.SERVING);
    refresh();
    timer.scheduleWithFixedDelay(this::refresh, 5, 5, TimeUnit.SECONDS);
  }

  /**
   * Null when ready: the quantizer is up (it is, once constructed), no engine is being recovered
   * and every engine answers its health check; else what is not ready.
   */
  synchronized String refresh() {
    if (closing) {
      return "shutting down";
    }
    if (recovering > 0) {
      health.setStatus(SERVICE, ServingStatus.NOT_SERVING);
      return "recovering engines left paused by this sidecar before it restarted";
    }
    List<String> down = engines.stream().filter(e -> !e.healthy()).map(EngineAdapter::name)
        .toList();
    unreachable = Set.copyOf(down);
    health.setStatus(SERVICE, down.isEmpty() ? ServingStatus.SERVING : ServingStatus.NOT_SERVING);
    return down.isEmpty() ? null : "engines not answering /health: " + down;
  }

  /** Engines not answering their health check, checked now (status shows them UNREACHABLE). */
  Set<String> unreachableNow() {
    refresh();
    return unreachable;
  }

  /** Whether {@code engine} failed its last health check (without checking again). */
  boolean unreachable(String engine) {
    return unreachable.contains(engine);
  }

  /** Shutting down: health turns NOT_SERVING for good. */
  @Override
  public void close() {
    synchronized (this) {
      closing = true;
    }
    timer.shutdownNow();
    health.enterTerminalState();
  }
}
