package dev.weightsync.cli.engine;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import dev.weightsync.core.checkpoint.CheckpointFolder;
import dev.weightsync.core.tensor.TensorSpec;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Executors;

/**
 * An SGLang-compatible stand-in engine: the HTTP routes and JSON of docs/engines.md, for the demo and
 * the tests. It records every call, tracks whether generation is paused and which weight version
 * it serves, really opens and reads the folder it is told to load (with {@code core}), and can be
 * told to misbehave: session routes answering 404, loads failing with 500, flush answering 400 for
 * a while, slow answers. Test-only routes: {@code GET /_calls}, {@code GET /_state},
 * {@code POST /_faults}.
 */
public final class StandInEngine implements AutoCloseable {

  private static final ObjectMapper JSON = new ObjectMapper();

  /** One recorded call. */
  public record Call(String method, String route, JsonNode body) {}

  /** What the engine has been told to do wrong; counts go down as faults are served. */
  public static final class Faults {
    public boolean sessionRoutes404;
    public int loadFailures;
    public int flush400;
    public long slowMillis;
    public boolean loadFailsForever;
  }

  private final HttpServer server;
  private final String adminKey;
  private final List<Call> calls = new ArrayList<>();
  private final Faults faults = new Faults();
  private boolean paused;
  private String weightVersion = "initial";
  private String modelPath = "";
  private int loadedTensors;
  private long loadedBytes;

  public StandInEngine(int port, String adminKey) throws IOException {
    this.adminKey = adminKey;
    try {
      this.server = HttpServer.create(new InetSocketAddress("127.0.0.1", port), 0);
    } catch (java.net.BindException e) {
      throw new IOException("port " + port + " is already in use (weightsync engine --port)", e);
    }
    server.setExecutor(Executors.newFixedThreadPool(4, r -> {
      Thread t = new Thread(r, "stand-in-engine");
      t.setDaemon(true);
      return t;
    }));
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

  /** Changes the faults under the engine's lock. */
  public synchronized void faults(java.util.function.Consumer<Faults> change) {
    change.accept(faults);
  }

  private void handle(HttpExchange ex) throws IOException {
    try (ex) {
      String route = ex.getRequestURI().getPath();
      byte[] raw = ex.getRequestBody().readAllBytes();
      JsonNode body = raw.length == 0 ? JSON.createObjectNode() : JSON.readTree(raw);
      if (route.startsWith("/_")) {
        control(ex, route, body);
        return;
      }
      long slow;
      synchronized (this) {
        calls.add(new Call(ex.getRequestMethod(), route, body));
        slow = faults.slowMillis;
      }
      if (adminKey != null && !("Bearer " + adminKey).equals(
          ex.getRequestHeaders().getFirst("Authorization")) && !route.equals("/health")) {
        reply(ex, 401, JSON.createObjectNode().put("error", "missing or wrong admin API key"));
        return;
      }
      if (slow > 0) {
        Thread.sleep(slow);
      }
      route(ex, route, body);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    } catch (IOException | RuntimeException e) {
      reply(ex, 500, JSON.createObjectNode().put("error", String.valueOf(e.getMessage())));
    }
  }

  private synchronized void route(HttpExchange ex, String route, JsonNode body) throws IOException {
    ObjectNode ok = JSON.createObjectNode();
    switch (route) {
      case "/health" -> reply(ex, 200, ok);
      case "/get_model_info" -> reply(ex, 200, ok.put("model_path", modelPath)
          .put("weight_version", weightVersion));
      case "/get_weight_version" -> reply(ex, 200, ok.put("weight_version", weightVersion));
      case "/pause_generation" -> {
        paused = true;
        reply(ex, 200, ok);
      }
      case "/continue_generation" -> {
        paused = false;
        reply(ex, 200, ok);
      }
      case "/flush_cache" -> {
        if (faults.flush400 != 0) {
          faults.flush400 = faults.flush400 > 0 ? faults.flush400 - 1 : -1;
          reply(ex, 400, ok.put("message", "requests are still running"));
        } else {
          reply(ex, 200, ok);
        }
      }
      case "/begin_weight_update", "/end_weight_update" ->
          reply(ex, faults.sessionRoutes404 ? 404 : 200, ok);
      case "/update_weights_from_disk" -> load(ex, body);
      case "/update_weight_version" -> {
        weightVersion = body.path("new_version").asText(weightVersion);
        reply(ex, 200, ok);
      }
      default -> reply(ex, 404, ok.put("error", "no route " + route));
    }
  }

  private void load(HttpExchange ex, JsonNode body) throws IOException {
    if (faults.loadFailsForever || faults.loadFailures > 0) {
      if (faults.loadFailures > 0) {
        faults.loadFailures--;
      }
      weightVersion = "mixed"; // a failed load may leave part of a folder loaded
      reply(ex, 500, JSON.createObjectNode().put("success", false)
          .put("message", "injected load failure"));
      return;
    }
    String path = body.path("model_path").asText("");
    String version = body.path("weight_version").asText("");
    try (CheckpointFolder f = CheckpointFolder.open(Path.of(path))) {
      if (!f.config().has("quantization_config") && f.tensors().stream()
          .anyMatch(t -> t.dtype() != dev.weightsync.core.tensor.DType.BF16)) {
        throw new IOException("quantized tensors but no quantization_config in config.json");
      }
      long bytes = 0;
      for (TensorSpec t : f.tensors()) {
        var w = f.source(t.name()).window(0, (int) Math.min(t.byteLength(), Integer.MAX_VALUE));
        bytes += w.remaining();
      }
      loadedTensors = f.tensors().size();
      loadedBytes = bytes;
    } catch (IOException | RuntimeException e) {
      reply(ex, 200, JSON.createObjectNode().put("success", false)
          .put("message", "cannot load " + path + ": " + e.getMessage()).put("num_paused_requests", 0));
      return;
    }
    modelPath = path;
    weightVersion = version;
    reply(ex, 200, JSON.createObjectNode().put("success", true)
        .put("message", "loaded " + loadedTensors + " tensors").put("num_paused_requests", 0));
  }

  private void control(HttpExchange ex, String route, JsonNode body) throws IOException {
    synchronized (this) {
      switch (route) {
        case "/_calls" -> {
          ArrayNode a = JSON.createArrayNode();
          calls.forEach(c -> a.addObject().put("method", c.method()).put("route", c.route())
              .set("body", c.body()));
          reply(ex, 200, a);
        }
        case "/_state" -> reply(ex, 200, JSON.createObjectNode().put("paused", paused)
            .put("weight_version", weightVersion).put("model_path", modelPath)
            .put("loaded_tensors", loadedTensors).put("loaded_bytes", loadedBytes));
        case "/_faults" -> {
          faults.sessionRoutes404 = body.path("session_routes_404").asBoolean(faults.sessionRoutes404);
          faults.loadFailures = body.path("load_failures").asInt(faults.loadFailures);
          faults.loadFailsForever = body.path("load_fails_forever").asBoolean(faults.loadFailsForever);
          faults.flush400 = body.path("flush_400").asInt(faults.flush400);
          faults.slowMillis = body.path("slow_ms").asLong(faults.slowMillis);
          reply(ex, 200, JSON.createObjectNode());
        }
        default -> reply(ex, 404, JSON.createObjectNode());
      }
    }
  }

  private static void reply(HttpExchange ex, int status, JsonNode body) throws IOException {
    byte[] bytes = JSON.writeValueAsBytes(body);
    ex.getResponseHeaders().set("Content-Type", "application/json");
    ex.sendResponseHeaders(status, bytes.length);
    try (OutputStream out = ex.getResponseBody()) {
      out.write(bytes);
    }
  }

  @Override
  public void close() {
    server.stop(0);
  }
}
