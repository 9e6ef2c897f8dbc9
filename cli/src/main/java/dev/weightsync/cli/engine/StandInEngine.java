package dev.weightsync.cli.engine;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import dev.weightsync.server.HttpServers;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

/**
 * A stand-in engine that speaks SGLang's routes or vLLM's ({@link Api}; vLLM's in
 * {@link VllmRoutes}): the HTTP routes and JSON of docs/engines.md, for the demo and the tests. It records every call, tracks whether generation is paused and which weight
 * version it serves, really opens and reads the folder it is told to load (with {@code core}),
 * and can be told to misbehave (see {@link Faults} and {@link RouteFault}; {@link Reply} for how it answers).
 *
 * <p>Like SGLang it runs update calls one at a time, and changes its reported weight_version only
 * when a load succeeds: after a failed load it still reports the old label over weights that may
 * be a mix of two versions. It knows when its weights are mixed (a failed or partial load, or an
 * update session opened by {@code begin_weight_update} and not yet ended) and counts a
 * {@code continue_generation} that arrives then as a <em>violation</em>: a sidecar must never
 * resume an engine that may serve a mix. Test-only routes: {@code GET /_calls},
 * {@code GET /_state}, {@code POST /_faults}, {@code POST /_restart}.
 */
public final class StandInEngine implements AutoCloseable {

  static final ObjectMapper JSON = new ObjectMapper();

  /** Whose routes the stand-in speaks. */
  public enum Api { SGLANG, VLLM }

  /** One recorded call; {@code query} is its URI's query string, empty for none. */
  public record Call(String method, String route, String query, JsonNode body) {}

  private final HttpServer server;
  private final ExecutorService handlers;
  private final String adminKey;
  private final List<Call> calls = new ArrayList<>();
  final Faults faults = new Faults();
  /** Engines run weight updates one at a time; a second one waits for the first. */
  final Object updateLock = new Object();
  /** The routes of the API spoken. */
  private final EngineRoutes routes;
  /** vLLM's routes, or null when speaking SGLang's (for its update state). */
  private final VllmRoutes vllm;
  private volatile boolean closed;
  // What the engine serves, guarded by this object's lock; the routes of either API change it.
  boolean paused;
  String weightVersion = "initial";
  String modelPath = "";
  int loadedTensors;
  long loadedBytes;
  /** An update session is open: the weights are being replaced. */
  boolean sessionOpen;
  /** A load failed or was refused part-way: some weights may be from the folder. */
  boolean partialLoad;
  int violations;

  /** An SGLang stand-in. */
  public StandInEngine(int port, String adminKey) throws IOException {
    this(port, adminKey, Api.SGLANG);
  }

  /** A stand-in speaking {@code api}'s routes on 127.0.0.1:{@code port} (0: any free port). */
  public StandInEngine(int port, String adminKey, Api api) throws IOException {
    this.adminKey = adminKey;
    this.vllm = api == Api.VLLM ? new VllmRoutes(this) : null;
    this.routes = vllm != null ? vllm : new SglangRoutes(this);
    try {
      this.server = HttpServers.create(new InetSocketAddress("127.0.0.1", port));
    } catch (java.net.BindException e) {
      throw new IOException("port " + port + " is already in use (weightsync engine --port)", e);
    }
    handlers = Executors.newCachedThreadPool(r -> {
      Thread t = new Thread(r, "stand-in-engine");
      t.setDaemon(true);
      return t;
    });
    server.setExecutor(handlers);
    server.createContext("/", this::handle);
  }

  public StandInEngine start() {
    server.start();
    return this;
  }

  public int port() {
    return server.getAddress().getPort();
  }

  public String url() {
    return "http://127.0.0.1:" + port();
  }

  public synchronized List<Call> calls() {
    return List.copyOf(calls);
  }

  /** The routes called, in order, leaving out health checks (a readiness probe polls them). */
  public synchronized List<String> routes() {
    return calls.stream().map(Call::route).filter(r -> !r.equals("/health")).toList();
  }

  public synchronized void clearCalls() {
    calls.clear();
  }

  public synchronized boolean paused() {
    return paused;
  }

  public synchronized String weightVersion() {
    return weightVersion;
  }

  public synchronized String modelPath() {
    return modelPath;
  }

  public synchronized int loadedTensors() {
    return loadedTensors;
  }

  public synchronized long loadedBytes() {
    return loadedBytes;
  }

  /** Whether the weights may be a mix of two versions (or in a layout being updated). */
  public synchronized boolean mixed() {
    return sessionOpen || partialLoad;
  }

  /** Resumes ({@code continue_generation}, vLLM's {@code /resume}) that arrived while the weights were mixed. */
  public synchronized int violations() {
    return violations;
  }

  /**
   * As a restart of the engine leaves it: serving the model it starts with (the label
   * "initial"), not paused, its update state cleared; the calls recorded are kept.
   */
  public synchronized void restart() {
    paused = false;
    weightVersion = "initial";
    modelPath = "";
    sessionOpen = false;
    partialLoad = false;
    if (vllm != null) {
      vllm.restart();
    }
  }

  /** vLLM's routes: whether its HTTP layer counts an update as in progress (false for SGLang). */
  public synchronized boolean updateInProgress() {
    return vllm != null && vllm.updating();
  }

  /** Changes the faults under the engine's lock. */
  public synchronized void faults(java.util.function.Consumer<Faults> change) {
    change.accept(faults);
  }

  /** Calls being handled now (a late answer or a hang included). */
  public int inFlight() {
    return active.get();
  }

  private final java.util.concurrent.atomic.AtomicInteger active =
      new java.util.concurrent.atomic.AtomicInteger();

  private void handle(HttpExchange ex) throws IOException {
    active.incrementAndGet();
    try (ex) {
      String route = ex.getRequestURI().getPath();
      String query = ex.getRequestURI().getRawQuery() == null ? ""
          : ex.getRequestURI().getRawQuery();
      byte[] raw = ex.getRequestBody().readAllBytes();
      JsonNode body = raw.length == 0 ? JSON.createObjectNode() : JSON.readTree(raw);
      if (route.startsWith("/_")) {
        control(ex, route, body);
        return;
      }
      long slow;
      RouteFault fault;
      synchronized (this) {
        calls.add(new Call(ex.getRequestMethod(), route, query, body));
        slow = faults.slowMillis;
        fault = faults.routes.get(route);
        if (fault != null) {
          RouteFault next = fault.served();
          if (next == null) {
            faults.routes.remove(route);
          } else {
            faults.routes.put(route, next);
          }
        }
      }
      if (adminKey != null && !("Bearer " + adminKey).equals(
          ex.getRequestHeaders().getFirst("Authorization")) && !route.equals("/health")) {
        Reply.json(ex, 401, JSON.createObjectNode().put("error", "missing or wrong admin API key"));
        return;
      }
      if (slow > 0) {
        Thread.sleep(slow);
      }
      if (fault != null) {
        faulty(ex, route, query, body, fault);
      } else {
        route((status, json) -> Reply.json(ex, status, json), route, query, body);
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    } catch (IOException | RuntimeException e) {
      Reply.json(ex, 500, JSON.createObjectNode().put("error", String.valueOf(e.getMessage())));
    } finally {
      active.decrementAndGet();
    }
  }

  private void faulty(HttpExchange ex, String route, String query, JsonNode body, RouteFault f)
      throws IOException, InterruptedException {
    switch (f.kind()) {
      case HANG -> {
        long until = f.millis() > 0 ? System.nanoTime() + f.millis() * 1_000_000 : Long.MAX_VALUE;
        while (!closed && System.nanoTime() < until) {
          Thread.sleep(10);
        }
        return;
      }
      default -> { }
    }
    if (f.workDone()) {
      Reply.Late late = new Reply.Late(ex, f);
      route(late, route, query, body);
      late.finish();
      return;
    }
    if (routes.loads(route)) {
      synchronized (this) {
        partialLoad = true; // a refused load may have applied part of the folder
      }
    }
    switch (f.kind()) {
      case HTTP_400 -> Reply.json(ex, 400, JSON.createObjectNode().put("error", "injected 400"));
      case SUCCESS_FALSE -> Reply.json(ex, 200, JSON.createObjectNode().put("success", false)
          .put("message", "injected success:false"));
      default -> Reply.json(ex, 500, JSON.createObjectNode().put("error", "injected 500"));
    }
  }

  private void route(Reply ex, String route, String query, JsonNode body) throws IOException,
      InterruptedException {
    routes.route(ex, route, queryParameters(query), body);
  }

  private static Map<String, String> queryParameters(String query) {
    Map<String, String> m = new HashMap<>();
    for (String kv : query.split("&")) {
      if (kv.isEmpty()) {
        continue;
      }
      int eq = kv.indexOf('=');
      String k = URLDecoder.decode(eq < 0 ? kv : kv.substring(0, eq), StandardCharsets.UTF_8);
      m.put(k, eq < 0 ? "" : URLDecoder.decode(kv.substring(eq + 1), StandardCharsets.UTF_8));
    }
    return m;
  }

  private void control(HttpExchange ex, String route, JsonNode body) throws IOException {
    synchronized (this) {
      switch (route) {
        case "/_calls" -> {
          ArrayNode a = JSON.createArrayNode();
          calls.forEach(c -> a.addObject().put("method", c.method()).put("route", c.route())
              .put("query", c.query()).set("body", c.body()));
          Reply.json(ex, 200, a);
        }
        case "/_state" -> Reply.json(ex, 200, JSON.createObjectNode().put("paused", paused)
            .put("weight_version", weightVersion).put("model_path", modelPath)
            .put("loaded_tensors", loadedTensors).put("loaded_bytes", loadedBytes)
            .put("mixed", sessionOpen || partialLoad).put("violations", violations));
        case "/_restart" -> {
          restart();
          Reply.json(ex, 200, JSON.createObjectNode());
        }
        case "/_faults" -> {
          faults.sessionRoutes404 = body.path("session_routes_404").asBoolean(faults.sessionRoutes404);
          faults.loadFailures = body.path("load_failures").asInt(faults.loadFailures);
          faults.loadFailsForever = body.path("load_fails_forever").asBoolean(faults.loadFailsForever);
          faults.flush400 = body.path("flush_400").asInt(faults.flush400);
          faults.slowMillis = body.path("slow_ms").asLong(faults.slowMillis);
          faults.loadMillis = body.path("load_ms").asLong(faults.loadMillis);
          body.path("routes").properties().forEach(kv -> faults.routes.put(kv.getKey(),
              RouteFault.of(kv.getValue().path("kind").asText(), kv.getValue().path("count")
                  .asInt(1), kv.getValue().path("ms").asLong(0))));
          Reply.json(ex, 200, JSON.createObjectNode());
        }
        default -> Reply.json(ex, 404, JSON.createObjectNode());
      }
    }
  }

  @Override
  public void close() {
    closed = true;
    server.stop(0);
    handlers.shutdownNow();
  }
}
