package dev.weightsync.server.engine;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.file.Path;
import java.util.Locale;

/**
 * One vLLM update session with the disk weight-transfer backend (docs/engines.md): pause,
 * init (once per engine lifetime), start, update_weights with the folder's path, finish with the
 * weight_version, confirm with weight_info, and only then resume — through the lease, as
 * {@link LeasedSession} has it.
 *
 * <p>{@code start_weight_update} already prepares the layers for reloading, so MAYBE_MIXED is
 * recorded before it, and a failure at or after it leaves the engine paused unless a complete
 * version loads and is confirmed. A start that never reached the engine (refused connection, no
 * such route) leaves the weights untouched. No update step is retried within a session: vLLM takes
 * one checkpoint per session, and answers 409 to a start while it still counts an earlier update
 * as in progress, which it does after a load that failed inside it, until it is restarted.
 */
final class VllmSession extends LeasedSession {

  /** vLLM's resume. */
  static final String RESUME = "/resume";
  private static final String NO_ROUTES = "this vLLM has no weight-transfer routes: start vllm"
      + " serve with VLLM_SERVER_DEV_MODE=1 and --weight-transfer-config '{\"backend\": \"disk\"}'"
      + " (the disk backend is in vLLM's main branch as of December 2026; the releases up to"
      + " v0.32 do not list it)";

  private final String pauseMode;
  /** Whether init_weight_transfer_engine was answered since the engine was last unreachable. */
  private volatile boolean initialized;

  VllmSession(String engine, EngineHttp http, EngineStateHolder state, String pauseMode,
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
      EngineHttp.Answer a = http.send("POST", "/pause?mode=" + pauseMode, null, http.retries());
      if (!a.ok()) { // refused: not paused
        throw new EngineCallException(a.status() == 404 ? NO_ROUTES
            : "/pause answered HTTP " + a.status() + " " + detail(a.body()), false);
      }
    } catch (EngineCallException e) {
      initialized = false; // it may have been restarted
      return pauseFailed(s, lease, e, "pause");
    }
    String initError = initialize();
    if (initError != null) {
      return untouchedOrMixed(s, lease, "init", initError);
    }
    if (!mayBeMixedFrom(s, "start_weight_update sent for '" + s.version() + "'")) {
      return untouchedOrMixed(s, lease, "start", "cannot record the session in the staging folder");
    }
    EngineResult notStarted = start(s, lease);
    if (notStarted != null) {
      return notStarted;
    }
    ObjectNode update = EngineHttp.JSON.createObjectNode();
    update.putObject("update_info").put("path", paths.of(folder));
    String loadError = once("/update_weights", update);
    if (loadError != null) {
      return failedLoad(s, lease, "load", loadError);
    }
    String finishError = once("/finish_weight_update", EngineHttp.JSON.createObjectNode()
        .put("weight_version", s.version()));
    if (finishError != null) {
      return failedLoad(s, lease, "finish", finishError);
    }
    String confirmed;
    try {
      confirmed = http.call("GET", "/weight_info", null, http.retries()).body()
          .path("weight_version").asText("");
    } catch (EngineCallException e) {
      return failedLoad(s, lease, "confirm", "loaded, but weight_info failed: " + e.getMessage());
    }
    if (!confirmed.equals(s.version())) {
      return failedLoad(s, lease, "confirm", "the engine reports weight_version '" + confirmed
          + "' after loading '" + s.version() + "'");
    }
    return confirmed(s, lease);
  }

  /** Null once the engine's weight transfer is initialized, else why not. */
  private String initialize() {
    if (initialized) {
      return null;
    }
    ObjectNode body = EngineHttp.JSON.createObjectNode();
    body.putObject("init_info"); // the disk backend needs nothing
    try {
      EngineHttp.Answer a = http.send("POST", "/init_weight_transfer_engine", body,
          http.retries());
      if (a.status() == 404) {
        return NO_ROUTES;
      }
      if (!a.ok()) {
        return "init_weight_transfer_engine answered HTTP " + a.status() + " " + detail(a.body());
      }
    } catch (EngineCallException e) {
      return "init_weight_transfer_engine failed: " + e.getMessage();
    }
    initialized = true;
    return null;
  }

  /**
   * Sends start_weight_update (once more after a re-init, when the engine says it was not
   * initialized); null once it started, else the session's result.
   */
  private EngineResult start(Start s, PausedEngine lease) {
    for (int attempt = 0; ; attempt++) {
      EngineHttp.Answer a;
      try {
        a = http.send("POST", "/start_weight_update", EngineHttp.JSON.createObjectNode(), 0);
      } catch (EngineCallException e) {
        if (!e.mayHaveRun()) { // never reached: the layers were not prepared
          initialized = false;
          return untouched(s, lease, "start_weight_update failed: " + e.getMessage());
        }
        return failedLoad(s, lease, "start", "start_weight_update failed: " + e.getMessage());
      }
      if (a.ok()) {
        return null;
      }
      if (a.status() == 404) {
        return untouched(s, lease, NO_ROUTES);
      }
      if (a.status() == 409) {
        return failedLoad(s, lease, "start", "start_weight_update answered 409 (" + detail(a.body())
            + "): vLLM still counts an earlier weight update as in progress, as it does after a"
            + " load that failed inside it, until it is restarted");
      }
      if (attempt == 0 && detail(a.body()).toLowerCase(Locale.ROOT).contains("not initialized")) {
        initialized = false;
        String again = initialize();
        if (again == null) {
          continue;
        }
        return failedLoad(s, lease, "start", again);
      }
      return failedLoad(s, lease, "start", "start_weight_update answered HTTP " + a.status() + " "
          + detail(a.body()));
    }
  }

  /** A start that did not happen: back to what the engine held before, then as any early failure. */
  private EngineResult untouched(Start s, PausedEngine lease, String error) {
    if (!s.mixedBefore()) {
      state.settle(EngineWeights.pausedClean(s.from(), "start_weight_update did not happen"));
    }
    return untouchedOrMixed(s, lease, "start", error);
  }

  /** One step that is not repeated within a session; null when it succeeded, else why not. */
  private String once(String route, ObjectNode body) {
    String step = route.substring(1);
    try {
      EngineHttp.Answer a = http.send("POST", route, body, 0);
      return a.ok() ? null : step + " answered HTTP " + a.status() + " " + detail(a.body());
    } catch (EngineCallException e) {
      return step + " failed: " + e.getMessage();
    }
  }

  /** What vLLM's answer says went wrong: FastAPI's detail, or an error message. */
  private static String detail(JsonNode body) {
    for (String field : new String[] {"detail", "error", "message"}) {
      if (body.path(field).isTextual()) {
        return body.path(field).asText();
      }
    }
    return body.toString();
  }
}
