package dev.weightsync.server.engine;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.util.logging.Logger;

/**
 * The SGLang update sequence of docs/engines.md over HTTP: pause, flush (retried while 400), begin
 * (when supported), update_weights_from_disk (retried), end (when supported), continue, confirm.
 * Any failure before the load resumes the engine; a load that fails even when retried leaves it
 * paused (unless configured otherwise) and says so.
 */
public final class SglangAdapter implements EngineAdapter {

  private static final Logger LOG = Logger.getLogger(SglangAdapter.class.getName());
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final int FLUSH_ATTEMPTS = 20;
  private static final Duration HEALTH_TIMEOUT = Duration.ofSeconds(2);

  /** An engine answer the session cannot go on from. */
  private static final class EngineCallException extends Exception {
    private static final long serialVersionUID = 1L;

    EngineCallException(String message) {
      super(message);
    }
  }

  private record Answer(int status, JsonNode body) {}

  private final String baseUrl;
  private final String adminKey;
  private final Duration timeout;
  private final int retries;
  private final String pauseMode;
  private final boolean resumeAfterFailedLoad;
  private final Duration backoff;
  private final HttpClient http;
  private volatile EngineState state;
  private final SessionLedger ledger;

  /**
   * @param ledger where sessions are recorded, so that a restarted sidecar finds the engines it
   *     left paused
   */
  public SglangAdapter(String baseUrl, String adminKey, Duration timeout, int retries,
      String pauseMode, boolean resumeAfterFailedLoad, Duration backoff, SessionLedger ledger) {
    this.ledger = ledger;
    this.baseUrl = baseUrl.endsWith("/") ? baseUrl.substring(0, baseUrl.length() - 1) : baseUrl;
    this.adminKey = adminKey;
    this.timeout = timeout;
    this.retries = retries;
    this.pauseMode = pauseMode;
    this.resumeAfterFailedLoad = resumeAfterFailedLoad;
    this.backoff = backoff;
    this.http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();
    this.state = new EngineState(this.baseUrl, EngineState.UNKNOWN, "", "");
  }

  @Override
  public String name() {
    return baseUrl;
  }

  @Override
  public EngineState state() {
    return state;
  }

  @Override
  public EngineResult update(Delivery delivery) {
    Path staged = delivery.folder();
    String version = delivery.version();
    long start = System.nanoTime();
    try {
      ledger.begin(baseUrl, state.loadedVersion(), version);
    } catch (IOException e) {
      return untouched(start, "pause", "cannot record the session in the staging folder ("
          + e.getMessage() + "); the engine was not paused");
    }
    try {
      call("POST", "/pause_generation", JSON.createObjectNode().put("mode", pauseMode), retries);
    } catch (EngineCallException e) {
      resumeQuietly(); // the pause may have taken effect even though its answer was lost
      return untouched(start, "pause", "pause_generation failed: " + e.getMessage());
    }
    try {
      flush();
    } catch (EngineCallException e) {
      return resumeAfter(start, "flush", "flush_cache failed: " + e.getMessage());
    }
    boolean session;
    try {
      session = optional("/begin_weight_update");
    } catch (EngineCallException e) {
      return resumeAfter(start, "begin", "begin_weight_update failed: " + e.getMessage());
    }
    String loadError = load(staged, version);
    if (loadError != null) {
      return failedLoad(start, "load", loadError);
    }
    if (session) {
      try {
        optional("/end_weight_update");
      } catch (EngineCallException e) {
        return failedLoad(start, "end", "end_weight_update failed: " + e.getMessage());
      }
    }
    try {
      call("POST", "/continue_generation", JSON.createObjectNode(), retries);
    } catch (EngineCallException e) {
      return finish(start, EngineOutcome.FAILED_PAUSED, EngineState.PAUSED_FAILED, version,
          "continue", "loaded " + version + " but continue_generation failed: " + e.getMessage());
    }
    String confirmed;
    try {
      confirmed = call("GET", "/get_weight_version", null, retries).body().path("weight_version")
          .asText("");
    } catch (EngineCallException e) {
      return finish(start, EngineOutcome.FAILED_RESUMED, EngineState.FAILED_RESUMED, "",
          "confirm", "loaded, but get_weight_version failed: " + e.getMessage());
    }
    if (!confirmed.equals(version)) {
      return finish(start, EngineOutcome.FAILED_RESUMED, EngineState.FAILED_RESUMED, confirmed,
          "confirm", "the engine reports weight_version '" + confirmed + "' after loading '" + version + "'");
    }
    return finish(start, EngineOutcome.LOADED, EngineState.SERVING, version, "", "");
  }

  private void flush() throws EngineCallException {
    for (int attempt = 0; ; attempt++) {
      Answer a = send("POST", "/flush_cache", JSON.createObjectNode(), retries);
      if (a.status() / 100 == 2) {
        return;
      }
      if (a.status() != 400 || attempt + 1 >= FLUSH_ATTEMPTS) {
        throw new EngineCallException("HTTP " + a.status() + " after " + (attempt + 1) + " attempt(s)");
      }
      sleep(attempt);
    }
  }

  /** Calls a route newer engines have; false when the engine answers 404 (not supported). */
  private boolean optional(String route) throws EngineCallException {
    Answer a = send("POST", route, JSON.createObjectNode(), retries);
    if (a.status() == 404) {
      return false;
    }
    if (a.status() / 100 != 2) {
      throw new EngineCallException("HTTP " + a.status() + " " + a.body());
    }
    return true;
  }

  /** The load, retried; null on success, else why it failed. */
  private String load(Path staged, String version) {
    ObjectNode body = JSON.createObjectNode()
        .put("model_path", staged.toAbsolutePath().toString())
        .put("weight_version", version)
        .put("flush_cache", true)
        .put("abort_all_requests", false);
    String error = null;
    for (int attempt = 0; attempt <= retries; attempt++) {
      if (attempt > 0) {
        sleep(attempt - 1);
      }
      try {
        Answer a = send("POST", "/update_weights_from_disk", body, 0);
        if (a.status() / 100 == 2 && a.body().path("success").asBoolean(false)) {
          return null;
        }
        error = "update_weights_from_disk: HTTP " + a.status() + " "
            + a.body().path("message").asText(a.body().toString());
      } catch (EngineCallException e) {
        error = "update_weights_from_disk: " + e.getMessage();
      }
      LOG.warning(() -> baseUrl + ": load attempt failed");
    }
    return error + " (after " + (retries + 1) + " attempt(s))";
  }

  private EngineResult failedLoad(long start, String step, String error) {
    if (resumeAfterFailedLoad) {
      resumeQuietly();
      return finish(start, EngineOutcome.FAILED_RESUMED, EngineState.FAILED_RESUMED, "", step,
          error + "; resumed anyway (resume-after-failed-load): it may serve a mix of versions");
    }
    return finish(start, EngineOutcome.FAILED_PAUSED, EngineState.PAUSED_FAILED, "", step,
        error + "; the engine stays paused until a version loads");
  }

  private EngineResult resumeAfter(long start, String step, String error) {
    try {
      call("POST", "/continue_generation", JSON.createObjectNode(), retries);
    } catch (EngineCallException e) {
      return finish(start, EngineOutcome.FAILED_PAUSED, EngineState.PAUSED_FAILED, "", step,
          error + "; and continue_generation failed: " + e.getMessage());
    }
    return untouched(start, step, error);
  }

  private EngineResult untouched(long start, String step, String error) {
    String loaded = state.loadedVersion();
    return finish(start, EngineOutcome.FAILED_UNTOUCHED,
        state.state().equals(EngineState.PAUSED_FAILED) ? EngineState.PAUSED_FAILED : EngineState.SERVING,
        loaded, step, error + "; weights untouched, serving the previous version");
  }

  private EngineResult finish(long start, EngineOutcome outcome, String newState, String loaded,
      String step, String message) {
    String keep = outcome == EngineOutcome.FAILED_UNTOUCHED ? state.loadedVersion() : loaded;
    state = new EngineState(baseUrl, newState, keep, message);
    record(newState.equals(EngineState.PAUSED_FAILED));
    return new EngineResult(baseUrl, outcome, keep, message, (System.nanoTime() - start) / 1e9,
        step);
  }

  private void record(boolean leftPaused) {
    try {
      if (leftPaused) {
        ledger.leftPaused(baseUrl);
      } else {
        ledger.clear(baseUrl);
      }
    } catch (IOException e) {
      LOG.warning(baseUrl + ": cannot update the session ledger: " + e.getMessage());
    }
  }

  /** The engine's weight_version, or empty when it does not answer. */
  private java.util.Optional<String> reportedVersion() {
    try {
      return java.util.Optional.of(call("GET", "/get_weight_version", null, 0).body()
          .path("weight_version").asText(""));
    } catch (EngineCallException e) {
      return java.util.Optional.empty();
    }
  }

  /**
   * After a restart: an engine this sidecar paused and did not resume because it died mid-session
   * is resumed when it reports a complete version (the one it served before, the one being loaded,
   * which it may have finished on its own, or one of the complete versions in {@code staged});
   * otherwise (a mix, or an engine left paused
   * after a failed load) it stays paused, reported, until a version loads. An engine that does
   * not answer keeps its entry and is dealt with by the next version.
   */
  public void recover(java.util.function.Predicate<String> staged) {
    java.util.Optional<SessionLedger.Entry> entry = ledger.get(baseUrl);
    if (entry.isEmpty()) {
      return;
    }
    SessionLedger.Entry e = entry.get();
    if (e.leftPaused()) {
      state = new EngineState(baseUrl, EngineState.PAUSED_FAILED, "", "left paused after a failed"
          + " load of '" + e.target() + "' (before this sidecar restarted); stays paused until a"
          + " version loads");
      return;
    }
    java.util.Optional<String> v = reportedVersion();
    if (v.isEmpty()) {
      state = new EngineState(baseUrl, EngineState.UNKNOWN, "", "paused by this sidecar before it"
          + " restarted and not answering now; the next version resumes it");
      LOG.warning(state.lastError() + ": " + baseUrl);
      return;
    }
    String now = v.get();
    if (!now.isEmpty() && (now.equals(e.target()) || now.equals(e.previous()) || staged.test(now))) {
      try {
        call("POST", "/continue_generation", JSON.createObjectNode(), retries);
        state = new EngineState(baseUrl, EngineState.SERVING, now, "");
        record(false);
        LOG.warning(baseUrl + ": resumed; it was paused by this sidecar, which died while loading '"
            + e.target() + "'; it serves '" + now + "'");
      } catch (EngineCallException ex) {
        state = new EngineState(baseUrl, EngineState.UNKNOWN, now, "paused by this sidecar before"
            + " it restarted; continue_generation failed: " + ex.getMessage());
      }
      return;
    }
    state = new EngineState(baseUrl, EngineState.PAUSED_FAILED, now, "paused by this sidecar,"
        + " which died while loading '" + e.target() + "'; it reports '" + now + "', neither that"
        + " nor '" + e.previous() + "': left paused until a version loads");
    record(true);
    LOG.warning(baseUrl + ": " + state.lastError());
  }

  @Override
  public boolean healthy() {
    // Its own short timeout: a readiness probe must answer even while an engine hangs.
    HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(baseUrl + "/health"))
        .timeout(HEALTH_TIMEOUT).GET();
    try {
      return http.send(b.build(), HttpResponse.BodyHandlers.discarding()).statusCode() == 200;
    } catch (IOException e) {
      return false;
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return false;
    }
  }

  private void resumeQuietly() {
    try {
      call("POST", "/continue_generation", JSON.createObjectNode(), retries);
    } catch (EngineCallException e) {
      LOG.warning(() -> baseUrl + ": continue_generation failed: " + e.getMessage());
    }
  }

  private Answer call(String method, String route, ObjectNode body, int attempts)
      throws EngineCallException {
    Answer a = send(method, route, body, attempts);
    if (a.status() / 100 != 2) {
      throw new EngineCallException(route + " answered HTTP " + a.status() + " " + a.body());
    }
    return a;
  }

  /** One HTTP exchange, retried on connection errors and 5xx up to {@code retryCount} times. */
  private Answer send(String method, String route, ObjectNode body, int retryCount)
      throws EngineCallException {
    String last = "";
    for (int attempt = 0; attempt <= retryCount; attempt++) {
      if (attempt > 0) {
        sleep(attempt - 1);
      }
      HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(baseUrl + route)).timeout(timeout);
      if (adminKey != null && !adminKey.isEmpty()) {
        b.header("Authorization", "Bearer " + adminKey);
      }
      if (body != null) {
        b.header("Content-Type", "application/json")
            .method(method, HttpRequest.BodyPublishers.ofString(body.toString()));
      } else {
        b.method(method, HttpRequest.BodyPublishers.noBody());
      }
      try {
        HttpResponse<String> r = http.send(b.build(), HttpResponse.BodyHandlers.ofString());
        JsonNode json;
        try {
          json = r.body().isBlank() ? JSON.createObjectNode() : JSON.readTree(r.body());
        } catch (IOException e) {
          json = JSON.createObjectNode().put("message", r.body());
        }
        if (r.statusCode() >= 500 && attempt < retryCount) {
          last = "HTTP " + r.statusCode();
          continue;
        }
        return new Answer(r.statusCode(), json);
      } catch (java.net.http.HttpTimeoutException e) {
        last = route + " timed out after " + timeout.toMillis() + " ms";
      } catch (IOException e) {
        last = route + ": " + (e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage());
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new EngineCallException(route + ": interrupted");
      }
    }
    throw new EngineCallException(last);
  }

  private void sleep(int attempt) {
    long ms = Math.min(backoff.toMillis() << Math.min(attempt, 5), backoff.toMillis() * 32);
    try {
      Thread.sleep(ms);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
