package dev.weightsync.server.engine;

import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.file.Path;

/**
 * One SGLang update session (docs/engines.md): pause, flush (retried while 400), begin (when
 * supported), update_weights_from_disk, end (when supported), confirm with get_weight_version,
 * and only then resume — through the lease, as {@link LeasedSession} has it.
 *
 * <p>MAYBE_MIXED is recorded before begin and before the load. A load whose attempt may still be
 * running inside the engine (a timeout, a dropped connection) is not sent again: the next load
 * queues behind it, as SGLang runs updates one at a time.
 */
final class SglangSession extends LeasedSession {

  private static final int FLUSH_ATTEMPTS = 20;
  /** SGLang's resume. */
  static final String RESUME = "/continue_generation";

  private final String pauseMode;

  SglangSession(String engine, EngineHttp http, EngineStateHolder state, String pauseMode,
      boolean resumeAfterFailedLoad, EnginePaths paths) {
    super(engine, http, state, resumeAfterFailedLoad, paths);
    this.pauseMode = pauseMode;
  }

  @Override
  public String resumeRoute() {
    return RESUME;
  }

  @Override
  protected EngineResult steps(Start s, PausedEngine lease, Path folder) {
    try {
      http.call("POST", "/pause_generation", EngineHttp.JSON.createObjectNode().put("mode", pauseMode),
          http.retries());
    } catch (EngineCallException e) {
      return pauseFailed(s, lease, e, "pause_generation");
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
      EngineHttp.Answer a = http.send("POST", "/begin_weight_update", EngineHttp.JSON.createObjectNode(),
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
        http.call("POST", "/end_weight_update", EngineHttp.JSON.createObjectNode(), http.retries());
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
    return confirmed(s, lease);
  }

  private void flush() throws EngineCallException {
    for (int attempt = 0; ; attempt++) {
      EngineHttp.Answer a = http.send("POST", "/flush_cache", EngineHttp.JSON.createObjectNode(),
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
    ObjectNode body = EngineHttp.JSON.createObjectNode()
        .put("model_path", paths.of(folder))
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
        EngineHttp.Answer a = http.send("POST", "/update_weights_from_disk", body, 0);
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
}
