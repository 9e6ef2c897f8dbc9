package dev.weightsync.server.engine;

import java.nio.file.Path;
import java.time.Duration;
import java.util.Optional;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.Supplier;
import java.util.logging.Logger;

/**
 * One engine driven over HTTP (SGLang's routes, {@link SglangSession}; vLLM's,
 * {@link VllmSession}): its update sessions, its recovery after a restart, an operator's release,
 * and what it may serve ({@link EngineWeights}, kept in the {@link SessionLedger}). Sessions,
 * recovery and releases never overlap: one engine, one of them at a time.
 */
public final class LeasedEngineAdapter implements EngineAdapter {

  private static final Logger LOG = Logger.getLogger(LeasedEngineAdapter.class.getName());

  private final String baseUrl;
  private final EngineHttp http;
  private final EngineStateHolder state;
  private final UpdateSession session;
  private final ReentrantLock oneAtATime = new ReentrantLock();

  /** How to reach an engine and what a session may do; the same for either engine's routes. */
  public record Settings(String adminKey, Duration timeout, int retries, Duration backoff,
      boolean resumeAfterFailedLoad, SessionLedger ledger, EnginePaths paths) {}

  private LeasedEngineAdapter(String url, Settings s, SessionFactory sessions) {
    this.baseUrl = url.endsWith("/") ? url.substring(0, url.length() - 1) : url;
    this.http = new EngineHttp(this.baseUrl, s.adminKey(), s.timeout(), s.retries(), s.backoff());
    this.state = new EngineStateHolder(this.baseUrl, s.ledger());
    this.session = sessions.create(this.baseUrl, http, state);
  }

  private interface SessionFactory {
    UpdateSession create(String engine, EngineHttp http, EngineStateHolder state);
  }

  /**
   * An SGLang engine at {@code url}; {@code pauseMode} is sent to {@code pause_generation}. The
   * ledger in {@code s} is where what the engine holds is recorded, so that a restarted sidecar
   * knows which engines it left paused or possibly mixed.
   */
  public static LeasedEngineAdapter sglang(String url, String pauseMode, Settings s) {
    return new LeasedEngineAdapter(url, s, (engine, http, state) -> new SglangSession(engine,
        http, state, pauseMode, s.resumeAfterFailedLoad(), s.paths()));
  }

  /** A vLLM engine at {@code url} (the disk weight-transfer backend); {@code pauseMode} for /pause. */
  public static LeasedEngineAdapter vllm(String url, String pauseMode, Settings s) {
    return new LeasedEngineAdapter(url, s, (engine, http, state) -> new VllmSession(engine,
        http, state, pauseMode, s.resumeAfterFailedLoad(), s.paths()));
  }

  @Override
  public String name() {
    return baseUrl;
  }

  @Override
  public EngineState state() {
    EngineWeights w = state.weights();
    return new EngineState(baseUrl, w.kind().name(), w.version(), w.reason());
  }

  /** What the engine may serve, as recorded. */
  public EngineWeights weights() {
    return state.weights();
  }

  @Override
  public EngineResult update(Delivery delivery) {
    oneAtATime.lock();
    try {
      return session.run(delivery.folder(), delivery.version());
    } finally {
      oneAtATime.unlock();
    }
  }

  /**
   * After a restart, before the sidecar reports ready: an engine left PAUSED_CLEAN is resumed; one
   * left MAYBE_MIXED gets the newest complete staged version loaded, confirmed and only then
   * resumed (an engine runs updates one at a time, so this load queues behind one still running
   * inside it); without one, or if that fails, it stays paused and says why.
   */
  public void recover(Supplier<Optional<Path>> newestComplete) {
    oneAtATime.lock();
    try {
      EngineWeights w = state.weights();
      switch (w.kind()) {
        case PAUSED_CLEAN -> {
          PausedEngine lease = new PausedEngine(baseUrl, http, session.resumeRoute(), state);
          if (lease.close() == PausedEngine.Ending.RESUMED) {
            state.settle(EngineWeights.serving(w.version()));
            LOG.warning(baseUrl + ": resumed; this sidecar had paused it before it restarted,"
                + " with its weights of '" + w.version() + "' untouched");
          } else {
            state.settle(w.because("paused by this sidecar before it restarted, weights"
                + " untouched; " + session.resumeRoute() + " failed: " + lease.resumeError()
                + "; the next version resumes it"));
          }
        }
        case MAYBE_MIXED -> {
          Optional<Path> newest = newestComplete.get();
          if (newest.isEmpty()) {
            state.settle(w.because(w.reason() + "; no complete staged version to load after the"
                + " restart: stays paused until a version loads"));
            LOG.warning(baseUrl + ": " + state.weights().reason());
            return;
          }
          String version = newest.get().getFileName().toString();
          LOG.warning(baseUrl + ": may hold a mix of '" + w.version() + "' and '" + w.target()
              + "' (" + w.reason() + "); loading the newest complete staged version '" + version
              + "' before resuming it");
          EngineResult r = session.run(newest.get(), version);
          if (r.outcome() != EngineOutcome.LOADED) {
            state.settle(state.weights().because("recovery after a restart failed at "
                + r.failedStep() + ": " + r.message()));
          }
          LOG.warning(baseUrl + ": recovery " + r.outcome() + (r.message().isEmpty() ? ""
              : ": " + r.message()));
        }
        default -> { }
      }
    } finally {
      oneAtATime.unlock();
    }
  }

  /**
   * An operator's release of the engine: resumed unless its weights may be mixed, and then only
   * with {@code acceptMixed}. Waits for a session or recovery in progress to end.
   *
   * @throws IllegalStateException naming why it was not resumed
   */
  public EngineState operatorResume(boolean acceptMixed) {
    oneAtATime.lock();
    try {
      EngineWeights w = state.weights();
      if (w.kind() == EngineWeights.Kind.MAYBE_MIXED && !acceptMixed) {
        throw new IllegalStateException(baseUrl + " may hold a mix of '" + w.version() + "' and '"
            + w.target() + "' (" + w.reason() + "); it is resumed only with --accept-mixed, or"
            + " by a version that loads");
      }
      PausedEngine lease = new PausedEngine(baseUrl, http, session.resumeRoute(), state);
      PausedEngine.Ending end = acceptMixed ? lease.acceptMixed() : lease.close();
      if (end != PausedEngine.Ending.RESUMED) {
        throw new IllegalStateException(baseUrl + ": " + session.resumeRoute() + " failed: "
            + lease.resumeError());
      }
      LOG.warning(baseUrl + ": resumed by an operator" + (w.mixed() ? " over possibly mixed"
          + " weights (accept-mixed)" : "") + "; it was " + w.kind());
      state.settle(w.mixed() ? EngineWeights.servingMixed(w.version(), w.target(),
          "resumed by an operator (accept-mixed): it may serve a mix of versions")
          : w.kind() == EngineWeights.Kind.UNKNOWN ? w : EngineWeights.serving(w.version()));
      return state();
    } finally {
      oneAtATime.unlock();
    }
  }

  /** At shutdown, after the grace: ends the calls in flight; the session's lease then ends it. */
  @Override
  public void abandon() {
    http.abandon();
  }

  @Override
  public boolean healthy() {
    return http.healthy();
  }
}
