package dev.weightsync.server.engine;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.net.ConnectException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.net.http.HttpTimeoutException;
import java.time.Duration;
import java.util.Set;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * HTTP calls to one engine (SGLang's routes or vLLM's): each with a timeout, retried with a doubling backoff when that
 * is safe, and abandonable at shutdown ({@link #abandon}) without interrupting anyone: an
 * abandoned call fails as one that may have run. The lease's resume goes through
 * {@link #resume}, which abandonment does not touch and interrupts cannot cut short.
 */
final class EngineHttp {

  static final ObjectMapper JSON = new ObjectMapper();
  private static final Duration HEALTH_TIMEOUT = Duration.ofSeconds(2);

  record Answer(int status, JsonNode body) {
    /** 2xx, and not {@code "success": false} (which some routes answer with a 200). */
    boolean ok() {
      return status / 100 == 2 && body.path("success").asBoolean(true);
    }
  }

  private final String baseUrl;
  private final String adminKey;
  private final Duration timeout;
  private final Duration resumeTimeout;
  private final int retries;
  private final Duration backoff;
  private final HttpClient http;
  private final Set<CompletableFuture<?>> inFlight = ConcurrentHashMap.newKeySet();
  private volatile boolean abandoned;

  EngineHttp(String baseUrl, String adminKey, Duration timeout, int retries, Duration backoff) {
    this.baseUrl = baseUrl;
    this.adminKey = adminKey;
    this.timeout = timeout;
    this.resumeTimeout = timeout.compareTo(Duration.ofSeconds(60)) < 0 ? timeout : Duration.ofSeconds(60);
    this.retries = retries;
    this.backoff = backoff;
    this.http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();
  }

  int retries() {
    return retries;
  }

  /** How long the lease's resume may take in all (its own bound, shorter than a load's). */
  Duration resumeTimeout() {
    return resumeTimeout;
  }

  /**
   * One exchange, retried while the engine is unreachable or answers 5xx, up to {@code attempts}
   * retries. Only for calls that are safe to repeat.
   */
  Answer send(String method, String route, ObjectNode body, int attempts) throws EngineCallException {
    EngineCallException last = null;
    for (int attempt = 0; attempt <= attempts; attempt++) {
      if (attempt > 0) {
        backoff(attempt - 1);
      }
      try {
        Answer a = once(method, route, body, timeout, true);
        if (a.status() >= 500 && attempt < attempts) {
          last = new EngineCallException(route + " answered HTTP " + a.status(), false);
          continue;
        }
        return a;
      } catch (EngineCallException e) {
        last = e;
        if (abandoned) {
          break;
        }
      }
    }
    throw last;
  }

  /** As {@link #send}, and an answer other than 2xx is a failure. */
  Answer call(String method, String route, ObjectNode body, int attempts) throws EngineCallException {
    Answer a = send(method, route, body, attempts);
    if (!a.ok()) {
      throw new EngineCallException(route + " answered HTTP " + a.status() + " " + a.body(), false);
    }
    return a;
  }

  /**
   * The engine's resume ({@code route}: SGLang's {@code /continue_generation}, vLLM's
   * {@code /resume}), retried within {@link #resumeTimeout}: unaffected by
   * {@link #abandon} and by interrupts (the interrupt flag is restored afterwards).
   */
  void resume(String route) throws EngineCallException {
    long deadline = System.nanoTime() + resumeTimeout.toNanos();
    EngineCallException last = null;
    for (int attempt = 0; attempt <= retries && System.nanoTime() < deadline; attempt++) {
      try {
        Duration left = Duration.ofNanos(Math.max(1, deadline - System.nanoTime()));
        Answer a = once("POST", route, JSON.createObjectNode(), left, false);
        if (a.ok()) {
          return;
        }
        last = new EngineCallException(route + " answered HTTP " + a.status(), false);
        if (a.status() < 500) {
          break;
        }
      } catch (EngineCallException e) {
        last = e;
      }
      pauseUninterruptibly(Math.min(backoff.toMillis() << Math.min(attempt, 5),
          Math.max(0, (deadline - System.nanoTime()) / 1_000_000)));
    }
    throw last != null ? last : new EngineCallException(route + ": no time left", true);
  }

  /** Ends every call in flight and refuses new ones, except {@link #resume}. */
  void abandon() {
    abandoned = true;
    inFlight.forEach(f -> f.cancel(true));
  }

  boolean healthy() {
    try {
      return once("GET", "/health", null, HEALTH_TIMEOUT, false).status() == 200;
    } catch (EngineCallException e) {
      return false;
    }
  }

  private Answer once(String method, String route, ObjectNode body, Duration limit,
      boolean abandonable) throws EngineCallException {
    if (abandonable && abandoned) {
      throw new EngineCallException(route + ": not sent, the sidecar is shutting down", false);
    }
    HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(baseUrl + route)).timeout(limit);
    if (adminKey != null && !adminKey.isEmpty()) {
      b.header("Authorization", "Bearer " + adminKey);
    }
    b.method(method, body == null ? HttpRequest.BodyPublishers.noBody()
        : HttpRequest.BodyPublishers.ofString(body.toString()));
    if (body != null) {
      b.header("Content-Type", "application/json");
    }
    CompletableFuture<HttpResponse<String>> f =
        http.sendAsync(b.build(), HttpResponse.BodyHandlers.ofString());
    if (abandonable) {
      inFlight.add(f);
      if (abandoned) {
        f.cancel(true);
      }
    }
    try {
      HttpResponse<String> r = awaitUninterruptibly(f, limit.plusSeconds(1));
      return new Answer(r.statusCode(), parse(r.body()));
    } catch (CancellationException e) {
      throw new EngineCallException(route + ": abandoned at shutdown (it may still run in the"
          + " engine)", true);
    } catch (TimeoutException e) {
      f.cancel(true);
      throw new EngineCallException(route + " timed out after " + limit.toMillis() + " ms", true);
    } catch (ExecutionException e) {
      Throwable c = e.getCause();
      if (c instanceof HttpTimeoutException) {
        throw new EngineCallException(route + " timed out after " + limit.toMillis() + " ms", true);
      }
      boolean refused = c instanceof ConnectException;
      throw new EngineCallException(route + ": " + (c.getMessage() == null
          ? c.getClass().getSimpleName() : c.getMessage()), !refused);
    } finally {
      inFlight.remove(f);
    }
  }

  private static JsonNode parse(String body) throws EngineCallException {
    if (body == null || body.isBlank()) {
      return JSON.createObjectNode();
    }
    try {
      return JSON.readTree(body);
    } catch (IOException e) {
      // an answer we cannot read says nothing about what the engine did
      throw new EngineCallException("unreadable answer (not JSON): "
          + body.substring(0, Math.min(80, body.length())), true);
    }
  }

  /** Waits for {@code f}; an interrupt does not cut the wait short but is kept for later. */
  private static <T> T awaitUninterruptibly(CompletableFuture<T> f, Duration limit)
      throws ExecutionException, TimeoutException {
    long deadline = System.nanoTime() + limit.toNanos();
    boolean interrupted = false;
    try {
      while (true) {
        try {
          return f.get(Math.max(0, deadline - System.nanoTime()), TimeUnit.NANOSECONDS);
        } catch (InterruptedException e) {
          interrupted = true;
        }
      }
    } finally {
      if (interrupted) {
        Thread.currentThread().interrupt();
      }
    }
  }

  /** Waits before retry {@code attempt + 1}: backoff, doubling up to 32 times it. */
  void backoff(int attempt) {
    pauseUninterruptibly(Math.min(backoff.toMillis() << Math.min(attempt, 5), backoff.toMillis() * 32));
  }

  private void pauseUninterruptibly(long ms) {
    long deadline = System.nanoTime() + ms * 1_000_000;
    boolean interrupted = false;
    while (System.nanoTime() < deadline) {
      try {
        Thread.sleep(Math.max(1, (deadline - System.nanoTime()) / 1_000_000));
      } catch (InterruptedException e) {
        interrupted = true;
      }
    }
    if (interrupted) {
      Thread.currentThread().interrupt();
    }
  }
}
