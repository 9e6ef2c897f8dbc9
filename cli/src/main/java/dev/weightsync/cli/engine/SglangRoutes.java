package dev.weightsync.cli.engine;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Map;

/**
 * The stand-in engine's SGLang routes (docs/engines.md): pause and continue, flush (400 while
 * told to), the update session (begin, update_weights_from_disk, end; 404 when told the engine has
 * none), get_weight_version and get_model_info. Update calls run one at a time, as SGLang's do, and
 * the reported weight_version changes only when a load succeeds: after a failed load the old label
 * stays over weights that may be a mix of two versions.
 */
final class SglangRoutes implements EngineRoutes {

  private final StandInEngine engine;

  SglangRoutes(StandInEngine engine) {
    this.engine = engine;
  }

  @Override
  public boolean loads(String route) {
    return route.equals("/update_weights_from_disk");
  }

  @Override
  public void route(Reply ex, String route, Map<String, String> query, JsonNode body)
      throws IOException, InterruptedException {
    switch (route) {
      case "/begin_weight_update", "/end_weight_update", "/update_weights_from_disk" -> {
        synchronized (engine.updateLock) { // one update call at a time, as SGLang
          update(ex, route, body);
        }
      }
      default -> simple(ex, route, body);
    }
  }

  private void simple(Reply ex, String route, JsonNode body) throws IOException {
    synchronized (engine) {
      simpleLocked(ex, route, body);
    }
  }

  private void simpleLocked(Reply ex, String route, JsonNode body) throws IOException {
    ObjectNode ok = StandInEngine.JSON.createObjectNode();
    switch (route) {
      case "/health" -> ex.send(200, ok);
      case "/get_model_info" -> ex.send(200, ok.put("model_path", engine.modelPath)
          .put("weight_version", engine.weightVersion));
      case "/get_weight_version" -> ex.send(200, ok.put("weight_version", engine.weightVersion));
      case "/pause_generation" -> {
        engine.paused = true;
        ex.send(200, ok);
      }
      case "/continue_generation" -> {
        if (engine.sessionOpen || engine.partialLoad) {
          engine.violations++;
        }
        engine.paused = false;
        ex.send(200, ok);
      }
      case "/flush_cache" -> {
        if (engine.faults.flush400 != 0) {
          engine.faults.flush400 = engine.faults.flush400 > 0 ? engine.faults.flush400 - 1 : -1;
          ex.send(400, ok.put("message", "requests are still running"));
        } else {
          ex.send(200, ok);
        }
      }
      case "/update_weight_version" -> {
        engine.weightVersion = body.path("new_version").asText(engine.weightVersion);
        ex.send(200, ok);
      }
      default -> ex.send(404, ok.put("error", "no route " + route));
    }
  }

  private void update(Reply ex, String route, JsonNode body) throws IOException,
      InterruptedException {
    ObjectNode ok = StandInEngine.JSON.createObjectNode();
    if (!route.equals("/update_weights_from_disk")) {
      synchronized (engine) {
        if (engine.faults.sessionRoutes404) {
          ex.send(404, ok);
          return;
        }
        engine.sessionOpen = route.equals("/begin_weight_update");
      }
      ex.send(200, ok);
      return;
    }
    long loadMillis;
    synchronized (engine) {
      loadMillis = engine.faults.loadMillis;
      if (engine.faults.loadFailsForever || engine.faults.loadFailures > 0) {
        if (engine.faults.loadFailures > 0) {
          engine.faults.loadFailures--;
        }
        engine.partialLoad = true; // a failed load may leave part of a folder loaded; the label stays
        ex.send(500, StandInEngine.JSON.createObjectNode().put("success", false)
            .put("message", "injected load failure"));
        return;
      }
    }
    if (loadMillis > 0) {
      Thread.sleep(loadMillis);
    }
    load(ex, body);
  }

  private void load(Reply ex, JsonNode body) throws IOException {
    String path = body.path("model_path").asText("");
    String version = body.path("weight_version").asText("");
    FolderLoad loaded;
    try {
      loaded = FolderLoad.of(Path.of(path));
    } catch (IOException | RuntimeException e) {
      synchronized (engine) {
        engine.partialLoad = true;
      }
      ex.send(200, StandInEngine.JSON.createObjectNode().put("success", false)
          .put("message", "cannot load " + path + ": " + e.getMessage()).put("num_paused_requests", 0));
      return;
    }
    synchronized (engine) {
      engine.loadedTensors = loaded.tensors();
      engine.loadedBytes = loaded.bytes();
      engine.modelPath = path;
      engine.weightVersion = version;
      engine.partialLoad = false; // a complete folder replaced every weight
    }
    ex.send(200, StandInEngine.JSON.createObjectNode().put("success", true)
        .put("message", "loaded " + loaded.tensors() + " tensors").put("num_paused_requests", 0));
  }
}
