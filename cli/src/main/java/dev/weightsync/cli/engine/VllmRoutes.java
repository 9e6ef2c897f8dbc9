package dev.weightsync.cli.engine;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.stream.Stream;

/**
 * The stand-in engine's vLLM routes: the development routes of {@code vllm serve} with
 * {@code VLLM_SERVER_DEV_MODE=1} and {@code --weight-transfer-config '{"backend": "disk"}'}, as
 * vLLM's {@code entrypoints/serve/dev/rlhf/api_router.py}, {@code rl_state_machine.py} and
 * {@code distributed/weight_transfer/disk_engine.py} answer them (docs/engines.md).
 *
 * <p>Two states are kept apart as vLLM keeps them: the HTTP layer's "update in progress" (set by
 * a successful start, cleared only by a successful finish; 409 on a second start, or on an update
 * or finish without one) and the disk backend's session (one checkpoint per session; a failed
 * load or a finish without a checkpoint aborts it). After a failed {@code /update_weights} the
 * HTTP layer still counts the update as in progress while the backend has none: a finish then
 * fails and a new start gets 409 — the engine stays paused over weights that may be a mix until
 * it is restarted. A {@code /resume} while the weights may be mixed (layers prepared by a start,
 * or a load that failed part-way) is counted as a violation.
 */
final class VllmRoutes implements EngineRoutes {

  /** The modes {@code /pause} takes (vLLM's {@code PauseMode}). */
  private static final java.util.Set<String> PAUSE_MODES = java.util.Set.of("abort", "wait", "keep");

  private final StandInEngine engine;
  private boolean initialized;
  /** The HTTP layer's {@code is_updating}. */
  private boolean updating;
  /** The disk backend's {@code _session_active}. */
  private boolean backendSession;
  private boolean checkpointLoaded;
  private int weightGen;
  private String weightLabel = "";
  /** The folder loaded in this session, committed at finish. */
  private FolderLoad pending;
  private String pendingPath;

  VllmRoutes(StandInEngine engine) {
    this.engine = engine;
  }

  /** As a restart leaves it: nothing initialized, no update in progress. Under the engine's lock. */
  void restart() {
    initialized = false;
    updating = false;
    backendSession = false;
    checkpointLoaded = false;
    pending = null;
  }

  /** Whether vLLM's HTTP layer counts an update as in progress. Under the engine's lock. */
  boolean updating() {
    return updating;
  }

  /** Whether {@code route} loads weights (a refusal of it may leave a part applied). */
  @Override
  public boolean loads(String route) {
    return route.equals("/update_weights");
  }

  @Override
  public void route(Reply ex, String route, Map<String, String> query, JsonNode body)
      throws IOException, InterruptedException {
    ObjectNode out = StandInEngine.JSON.createObjectNode();
    switch (route) {
      case "/health" -> ex.send(200, out);
      case "/pause" -> {
        String mode = query.getOrDefault("mode", "abort");
        if (!PAUSE_MODES.contains(mode)) {
          ex.send(400, out.put("error", "invalid pause mode '" + mode + "': abort, wait or keep"));
          return;
        }
        synchronized (engine) {
          engine.paused = true;
        }
        ex.send(200, out.put("status", "paused"));
      }
      case "/resume" -> {
        synchronized (engine) {
          if (engine.sessionOpen || engine.partialLoad) {
            engine.violations++;
          }
          engine.paused = false;
        }
        ex.send(200, out.put("status", "resumed"));
      }
      case "/is_paused" -> {
        synchronized (engine) {
          ex.send(200, out.put("is_paused", engine.paused));
        }
      }
      case "/get_world_size" -> ex.send(200, out.put("world_size", 1));
      case "/weight_info" -> {
        synchronized (engine) {
          ex.send(200, out.put("weight_version", engine.weightVersion).put("weight_gen", weightGen)
              .put("weight_label", weightLabel));
        }
      }
      case "/update_weight_version" -> {
        if (!body.path("new_version").isTextual()) {
          ex.send(422, out.put("detail", "missing 'new_version' in the request body"));
          return;
        }
        synchronized (engine) {
          engine.weightVersion = body.path("new_version").asText();
        }
        ex.send(200, out.put("success", true).put("new_version", body.path("new_version").asText()));
      }
      case "/init_weight_transfer_engine", "/start_weight_update", "/update_weights",
          "/finish_weight_update" -> {
        synchronized (engine.updateLock) { // one update call at a time
          update(ex, route, body, out);
        }
      }
      default -> ex.send(404, out.put("detail", "Not Found"));
    }
  }

  private void update(Reply ex, String route, JsonNode body, ObjectNode out)
      throws IOException, InterruptedException {
    switch (route) {
      case "/init_weight_transfer_engine" -> {
        if (!body.has("init_info")) {
          ex.send(400, out.put("detail", "Missing 'init_info' in request body"));
          return;
        }
        synchronized (engine) {
          initialized = true;
        }
        ex.send(200, out.put("message", "Weight transfer initialized"));
      }
      case "/start_weight_update" -> {
        synchronized (engine) {
          if (updating) {
            ex.send(409, out.put("detail", "start_weight_update called while a weight update is"
                + " already in progress. Call finish_weight_update first."));
            return;
          }
          if (!initialized) {
            ex.send(500, out.put("detail", "the weight transfer engine is not initialized:"
                + " POST /init_weight_transfer_engine first"));
            return;
          }
          updating = true;
          backendSession = true;
          checkpointLoaded = false;
          engine.sessionOpen = true; // the layers are prepared for reloading from here on
        }
        ex.send(200, out.put("message", "Weight update started"));
      }
      case "/update_weights" -> updateWeights(ex, body, out);
      default -> finish(ex, body, out);
    }
  }

  private void updateWeights(Reply ex, JsonNode body, ObjectNode out)
      throws IOException, InterruptedException {
    JsonNode info = body.path("update_info");
    if (info.isMissingNode()) {
      ex.send(400, out.put("detail", "Missing 'update_info' in request body"));
      return;
    }
    long loadMillis;
    synchronized (engine) {
      if (!updating) {
        ex.send(409, out.put("detail", "update_weights called without a preceding"
            + " start_weight_update."));
        return;
      }
      if (!backendSession) {
        ex.send(500, out.put("detail", "start_weight_update must be called before loading a"
            + " checkpoint"));
        return;
      }
      if (checkpointLoaded) {
        abortSession();
        ex.send(500, out.put("detail", "The disk backend accepts exactly one checkpoint per"
            + " update session"));
        return;
      }
      Faults f = engine.faults;
      loadMillis = f.loadMillis;
      if (f.loadFailsForever || f.loadFailures > 0) {
        if (f.loadFailures > 0) {
          f.loadFailures--;
        }
        engine.partialLoad = true; // weights loaded before the error stay applied
        abortSession();
        ex.send(500, out.put("detail", "injected load failure"));
        return;
      }
    }
    if (loadMillis > 0) {
      Thread.sleep(loadMillis);
    }
    String path = info.path("path").asText("");
    FolderLoad loaded;
    try {
      checkPath(path);
      loaded = FolderLoad.of(Path.of(path));
    } catch (IOException | RuntimeException e) {
      synchronized (engine) {
        engine.partialLoad = true;
        abortSession();
      }
      ex.send(500, out.put("detail", "cannot load " + path + ": " + e.getMessage()));
      return;
    }
    synchronized (engine) {
      checkpointLoaded = true;
      pending = loaded;
      pendingPath = path;
    }
    ex.send(200, out.put("message", "Weights updated"));
  }

  /** As the disk backend's update info: an absolute local folder holding safetensors files. */
  private static void checkPath(String path) throws IOException {
    Path p = Path.of(path);
    if (path.isEmpty() || !p.isAbsolute()) {
      throw new IOException("`path` must be an absolute local directory");
    }
    if (!Files.isDirectory(p)) {
      throw new IOException("Shared-disk checkpoint path must be a local directory: " + path);
    }
    try (Stream<Path> s = Files.list(p)) {
      if (s.noneMatch(f -> f.getFileName().toString().endsWith(".safetensors"))) {
        throw new IOException("Shared-disk checkpoint directory contains no safetensors files: "
            + path);
      }
    }
  }

  private void finish(Reply ex, JsonNode body, ObjectNode out) throws IOException {
    synchronized (engine) {
      if (!updating) {
        ex.send(409, out.put("detail", "finish_weight_update called without a preceding"
            + " start_weight_update."));
        return;
      }
      if (!backendSession) {
        ex.send(500, out.put("detail", "No shared-disk weight update is active"));
        return;
      }
      if (!checkpointLoaded) {
        abortSession();
        ex.send(500, out.put("detail", "No checkpoint was loaded during the shared-disk update"
            + " session"));
        return;
      }
      backendSession = false;
      checkpointLoaded = false;
      updating = false;
      engine.sessionOpen = false;
      engine.partialLoad = false; // a complete checkpoint replaced every weight
      engine.loadedTensors = pending.tensors();
      engine.loadedBytes = pending.bytes();
      engine.modelPath = pendingPath;
      if (body.path("weight_version").isTextual()) {
        engine.weightVersion = body.path("weight_version").asText();
      }
      if (body.path("weight_label").isTextual()) {
        weightLabel = body.path("weight_label").asText();
      }
      weightGen++;
      ex.send(200, out.put("message", "Weight update finished").put("weight_gen", weightGen)
          .put("weight_label", weightLabel));
    }
  }

  /**
   * The disk backend ends its session (layerwise reload finalized over what was loaded); the HTTP
   * layer's "in progress" is left as it is. Under the engine's lock.
   */
  private void abortSession() {
    backendSession = false;
    checkpointLoaded = false;
    engine.sessionOpen = false;
  }
}
