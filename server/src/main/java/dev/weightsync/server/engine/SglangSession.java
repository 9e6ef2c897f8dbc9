package dev.weightsync.server.engine;

import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.file.Path;

/**
 * One SGLang update session (docs/engines.md): pause, flush (retried while 400), begin (when
 * supported), update_weights_from_disk, end (when supported), confirm with get_weight_version,
 * and only then resume — through the {@link PausedEngine} lease, on every path.
 *
 * <p>What the engine holds is recorded before each step that changes it: PAUSED_CLEAN before the
 * pause, MAYBE_MIXED before begin and before the load. From MAYBE_MIXED — this session's or one
 * left by an earlier one — the engine is resumed only after a complete version loaded and was
 * confirmed. A load whose attempt may still be running inside the engine (a timeout, a dropped
 * connection) is not sent again: the next load queues behind it, as SGLang runs updates one at a
 * time.
 */
final class SglangSession {

  private static final int FLUSH_ATTEMPTS = 20;

  private final String engine;
  private final SglangHttp http;
  private final EngineStateHolder state;
  private final String pauseMode;
  private final boolean resumeAfterFailedLoad;

  SglangSession(String engine, SglangHttp http, EngineStateHolder state, String pauseMode,
      boolean resumeAfterFailedLoad) {
    this.engine = engine;
    this.http = http;
    this.state = state;
    this.pauseMode = pauseMode;
    this.resumeAfterFailedLoad = resumeAfterFailedLoad;
  }

  /** What this session started from. */
  private record Start(long nanos, EngineWeights before, String version) {
    boolean mixedBefore() {
      return !before.mayResume();
    }

    /** The version the engine's weights were complete at (the label it keeps showing). */
    String from() {
      return before.version();
    }
  }

  /** Loads {@code folder} as {@code version}; the result says what the engine is left doing. */
  EngineResult run(Path folder, String version) {
    Start s = new Start(System.nanoTime(), state.weights(), version);
    if (!s.mixedBefore()) {
      try {
        state.record(EngineWeights.pausedClean(s.from(), "paused to load '" + version + "'"));
      } catch (IOException e) {
        return result(s, EngineOutcome.FAILED_UNTOUCHED, s.from(), "pause", "cannot record the"
            + " session in the staging folder (" + e.getMessage() + "); the engine was not paused");
      }
    }
    PausedEngine lease = new PausedEngine(engine, http, state);
    try {
      return steps(s, lease, folder);
    } catch (RuntimeException e) {
      return untouchedOrMixed(s, lease, "internal", "internal error in the session: " + e);
    } finally {
      lease.close(); // a no-op when a step already ended it
    }
  }

  private EngineResult steps(Start s, PausedEngine lease, Path folder) {
    try {
      http.call("POST", "/pause_generation", SglangHttp.JSON.createObjectNode().put("mode", pauseMode),
          http.retries());
    } catch (EngineCallException e) {
      boolean wasRunning = s.before().kind() == EngineWeights.Kind.SERVING
          || s.before().kind() == EngineWeights.Kind.UNKNOWN;
      if (!e.mayHaveRun() && wasRunning) { // never reached, or refused: it is not paused
        state.settle(s.before());
        lease.notPaused();
        return result(s, EngineOutcome.FAILED_UNTOUCHED, s.from(), "pause", "pause_generation"
            + " failed: " + e.getMessage() + "; the engine was not paused and serves its"
            + " previous version");
      }
      return untouchedOrMixed(s, lease, "pause", "pause_generation failed: " + e.getMessage());
    }
    try {
      flush();
    } catch (EngineCallException e) {
      return untouchedOrMixed(s, lease, "flush", "flush_cache failed: " + e.getMessage());
    }
    String why = "begin_weight_update sent for '" + s.version() + "'";
    if (!mayBeMixedFrom(s, why)) {
      return untouchedOrMixed(s, lease, "begin", "cannot record the session in the staging folder");
    }
    boolean session;
    try {
      SglangHttp.Answer a = http.send("POST", "/begin_weight_update", SglangHttp.JSON.createObjectNode(),
          http.retries());
      session = a.status() != 404;
      if (session && !a.ok()) {
        return failedLoad(s, lease, "begin", "begin_weight_update answered HTTP " + a.status());
      }
    } catch (EngineCallException e) {
      return failedLoad(s, lease, "begin", "begin_weight_update failed: " + e.getMessage());
    }
    if (!mayBeMixedFrom(s, "loading '" + s.version() + "'")) {
      return failedLoad(s, lease, "load", "cannot record the session in the staging folder");
    }
    String loadError = load(folder, s.version());
    if (loadError != null) {
      return failedLoad(s, lease, "load", loadError);
    }
    if (session) {
      try {
        http.call("POST", "/end_weight_update", SglangHttp.JSON.createObjectNode(), http.retries());
      } catch (EngineCallException e) {
        return failedLoad(s, lease, "end", "end_weight_update failed: " + e.getMessage());
      }
    }
    String confirmed;
    try {
      confirmed = http.call("GET", "/get_weight_version", null, http.retries()).body()
          .path("weight_version").asText("");
    } catch (EngineCallException e) {
      return failedLoad(s, lease, "confirm", "loaded, but get_weight_version failed: "
          + e.getMessage());
    }
    if (!confirmed.equals(s.version())) {
      return failedLoad(s, lease, "confirm", "the engine reports weight_version '" + confirmed
          + "' after loading '" + s.version() + "'");
    }
    state.settle(EngineWeights.pausedClean(s.version(), "loaded and confirmed '" + s.version() + "'"));
    if (lease.close() == PausedEngine.Ending.RESUMED) {
      state.settle(EngineWeights.serving(s.version()));
      return result(s, EngineOutcome.LOADED, s.version(), "", "");
    }
    return result(s, EngineOutcome.FAILED_PAUSED, "", "continue", "loaded and confirmed '"
        + s.version() + "', but continue_generation failed: " + lease.resumeError()
        + "; paused with complete weights, the next version resumes it");
  }

  /** Records MAYBE_MIXED (from the last complete version to this target); false if it cannot. */
  private boolean mayBeMixedFrom(Start s, String why) {
    try {
      state.record(EngineWeights.maybeMixed(s.from(), s.version(), why));
      return true;
    } catch (IOException e) {
      return false;
    }
  }

  private void flush() throws EngineCallException {
    for (int attempt = 0; ; attempt++) {
      SglangHttp.Answer a = http.send("POST", "/flush_cache", SglangHttp.JSON.createObjectNode(),
          http.retries());
      if (a.ok()) {
        return;
      }
      if (a.status() != 400 || attempt + 1 >= FLUSH_ATTEMPTS) {
        throw new EngineCallException("/flush_cache answered HTTP " + a.status() + " " + a.body(),
            false);
      }
      http.backoff(attempt);
    }
  }

  /**
   * The load, retried while each failed attempt is known to have ended (the engine answered);
   * null on success, else why it failed.
   */
  private String load(Path folder, String version) {
    ObjectNode body = SglangHttp.JSON.createObjectNode()
        .put("model_path", folder.toAbsolutePath().toString())
        .put("weight_version", version)
        .put("flush_cache", true)
        .put("abort_all_requests", false);
    String error = null;
    int attempts = http.retries() + 1;
    for (int attempt = 0; attempt < attempts; attempt++) {
      if (attempt > 0) {
        http.backoff(attempt - 1);
      }
      try {
        SglangHttp.Answer a = http.send("POST", "/update_weights_from_disk", body, 0);
        if (a.ok() && a.body().path("success").asBoolean(false)) {
          return null;
        }
        error = "update_weights_from_disk: HTTP " + a.status() + " "
            + a.body().path("message").asText(a.body().toString());
      } catch (EngineCallException e) {
        if (e.mayHaveRun()) {
          return "update_weights_from_disk: " + e.getMessage() + "; not sent again while that"
              + " attempt may still run inside the engine";
        }
        error = "update_weights_from_disk: " + e.getMessage();
      }
    }
    return error + " (after " + attempts + " attempt(s))";
  }

  /**
   * A failure before any weight changed: the lease resumes the engine on its previous version —
   * unless an earlier session left it possibly mixed, and then it stays paused.
   */
  private EngineResult untouchedOrMixed(Start s, PausedEngine lease, String step, String error) {
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
    state.settle(EngineWeights.pausedClean(s.from(), step + " failed and continue_generation"
        + " failed: " + lease.resumeError()));
    return result(s, EngineOutcome.FAILED_PAUSED, "", step, error + "; and continue_generation"
        + " failed (" + lease.resumeError() + "): paused with its previous weights untouched;"
        + " the next version resumes it");
  }

  /** A failure after weights may have changed: left paused, or resumed anyway if configured. */
  private EngineResult failedLoad(Start s, PausedEngine lease, String step, String error) {
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

  private EngineResult result(Start s, EngineOutcome outcome, String loaded, String step,
      String message) {
    return new EngineResult(engine, outcome, loaded, message, (System.nanoTime() - s.nanos()) / 1e9,
        step);
  }
}
