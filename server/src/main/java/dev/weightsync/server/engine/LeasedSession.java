package dev.weightsync.server.engine;

import java.io.IOException;
import java.nio.file.Path;

/**
 * What every engine's update session shares (docs/engines.md): what the engine holds is recorded
 * before each step that changes it — PAUSED_CLEAN before the pause, MAYBE_MIXED before the first
 * step that may touch the weights or their layout — and the {@link PausedEngine} lease, opened
 * before the pause, ends the session on every path. From MAYBE_MIXED (this session's or one left
 * by an earlier one) the engine is resumed only after a complete version loaded and was
 * confirmed. The steps between are the engine's ({@link #steps}).
 */
abstract class LeasedSession implements UpdateSession {

  protected final String engine;
  protected final EngineHttp http;
  protected final EngineStateHolder state;
  protected final EnginePaths paths;
  private final boolean resumeAfterFailedLoad;

  LeasedSession(String engine, EngineHttp http, EngineStateHolder state,
      boolean resumeAfterFailedLoad, EnginePaths paths) {
    this.engine = engine;
    this.http = http;
    this.state = state;
    this.resumeAfterFailedLoad = resumeAfterFailedLoad;
    this.paths = paths;
  }

  /** What this session started from. */
  protected record Start(long nanos, EngineWeights before, String version) {
    boolean mixedBefore() {
      return !before.mayResume();
    }

    /** The version the engine's weights were complete at (the label it keeps showing). */
    String from() {
      return before.version();
    }
  }

  /** The session from the pause on; every return goes through a result helper below. */
  protected abstract EngineResult steps(Start s, PausedEngine lease, Path folder);

  @Override
  public final EngineResult run(Path folder, String version) {
    Start s = new Start(System.nanoTime(), state.weights(), version);
    if (!s.mixedBefore()) {
      try {
        state.record(EngineWeights.pausedClean(s.from(), "paused to load '" + version + "'"));
      } catch (IOException e) {
        return result(s, EngineOutcome.FAILED_UNTOUCHED, s.from(), "pause", "cannot record the"
            + " session in the staging folder (" + e.getMessage() + "); the engine was not paused");
      }
    }
    PausedEngine lease = new PausedEngine(engine, http, resumeRoute(), state);
    try {
      return steps(s, lease, folder);
    } catch (RuntimeException e) {
      return untouchedOrMixed(s, lease, "internal", "internal error in the session: " + e);
    } finally {
      lease.close(); // a no-op when a step already ended it
    }
  }

  /**
   * A pause that failed: an engine that was running and certainly not paused (refused, never
   * reached) is left as it was; otherwise as any failure before the weights changed.
   */
  protected EngineResult pauseFailed(Start s, PausedEngine lease, EngineCallException e,
      String route) {
    boolean wasRunning = s.before().kind() == EngineWeights.Kind.SERVING
        || s.before().kind() == EngineWeights.Kind.UNKNOWN;
    if (!e.mayHaveRun() && wasRunning) { // never reached, or refused: it is not paused
      state.settle(s.before());
      lease.notPaused();
      return result(s, EngineOutcome.FAILED_UNTOUCHED, s.from(), "pause", route + " failed: "
          + e.getMessage() + "; the engine was not paused and serves its previous version");
    }
    return untouchedOrMixed(s, lease, "pause", route + " failed: " + e.getMessage());
  }

  /** Loaded and confirmed: resumed through the lease, or left paused with complete weights. */
  protected EngineResult confirmed(Start s, PausedEngine lease) {
    state.settle(EngineWeights.pausedClean(s.version(), "loaded and confirmed '" + s.version() + "'"));
    if (lease.close() == PausedEngine.Ending.RESUMED) {
      state.settle(EngineWeights.serving(s.version()));
      return result(s, EngineOutcome.LOADED, s.version(), "", "");
    }
    return result(s, EngineOutcome.FAILED_PAUSED, "", "continue", "loaded and confirmed '"
        + s.version() + "', but " + resumeRoute() + " failed: " + lease.resumeError()
        + "; paused with complete weights, the next version resumes it");
  }

  /** Records MAYBE_MIXED (from the last complete version to this target); false if it cannot. */
  protected boolean mayBeMixedFrom(Start s, String why) {
    try {
      state.record(EngineWeights.maybeMixed(s.from(), s.version(), why));
      return true;
    } catch (IOException e) {
      return false;
    }
  }

  /**
   * A failure before any weight changed: the lease resumes the engine on its previous version —
   * unless an earlier session left it possibly mixed, and then it stays paused.
   */
  protected EngineResult untouchedOrMixed(Start s, PausedEngine lease, String step, String error) {
    if (!state.weights().mayResume()) {
      return failedLoad(s, lease, step, error);
    }
    PausedEngine.Ending end = lease.close();
    if (end == PausedEngine.Ending.RESUMED) {
      state.settle(s.before().kind() == EngineWeights.Kind.UNKNOWN ? EngineWeights.unknown()
          : EngineWeights.serving(s.from()));
      return result(s, EngineOutcome.FAILED_UNTOUCHED, s.from(), step,
          error + "; weights untouched, serving the previous version");
    }
    state.settle(EngineWeights.pausedClean(s.from(), step + " failed and " + resumeRoute()
        + " failed: " + lease.resumeError()));
    return result(s, EngineOutcome.FAILED_PAUSED, "", step, error + "; and " + resumeRoute()
        + " failed (" + lease.resumeError() + "): paused with its previous weights untouched;"
        + " the next version resumes it");
  }

  /** A failure after weights may have changed: left paused, or resumed anyway if configured. */
  protected EngineResult failedLoad(Start s, PausedEngine lease, String step, String error) {
    EngineWeights now = state.weights();
    String from = now.mixed() ? now.version() : s.from();
    EngineWeights mixed = EngineWeights.maybeMixed(from, s.version(), step + " failed: " + error);
    state.settle(mixed);
    if (resumeAfterFailedLoad && lease.acceptMixed() == PausedEngine.Ending.RESUMED) {
      state.settle(EngineWeights.servingMixed(from, s.version(), "resumed after " + step
          + " failed (resume-after-failed-load): " + error));
      return result(s, EngineOutcome.FAILED_RESUMED, "", step, error + "; resumed anyway"
          + " (resume-after-failed-load): it may serve a mix of versions");
    }
    lease.close();
    return result(s, EngineOutcome.FAILED_PAUSED, "", step, error + "; left paused: its weights"
        + " may be a mix of '" + from + "' and '" + s.version() + "', and it is resumed only once"
        + " a complete version loads");
  }

  protected EngineResult result(Start s, EngineOutcome outcome, String loaded, String step,
      String message) {
    return new EngineResult(engine, outcome, loaded, message, (System.nanoTime() - s.nanos()) / 1e9,
        step);
  }
}
