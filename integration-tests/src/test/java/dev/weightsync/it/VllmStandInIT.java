package dev.weightsync.it;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.weightsync.cli.engine.StandInEngine;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The stand-in's vLLM routes (weightsync engine --api vllm) over real HTTP, as vLLM's development
 * routes with the disk backend answer: the session, its ordering rules, the state a failed load
 * leaves, the layout it checks, and the resume it counts as a violation.
 */
class VllmStandInIT {

  private static final ObjectMapper JSON = new ObjectMapper();
  private final HttpClient http = HttpClient.newHttpClient();
  private StandInEngine engine;

  @TempDir Path tmp;

  @BeforeEach
  void start() throws Exception {
    engine = new StandInEngine(0, null, StandInEngine.Api.VLLM).start();
  }

  @AfterEach
  void stop() {
    engine.close();
  }

  private record Answer(int status, JsonNode body) {}

  private Answer post(String route, String body) throws Exception {
    HttpResponse<String> r = http.send(HttpRequest.newBuilder(URI.create(engine.url() + route))
        .POST(HttpRequest.BodyPublishers.ofString(body))
        .header("Content-Type", "application/json").build(), HttpResponse.BodyHandlers.ofString());
    return new Answer(r.statusCode(), r.body().isEmpty() ? JSON.createObjectNode()
        : JSON.readTree(r.body()));
  }

  private JsonNode get(String route) throws Exception {
    return JSON.readTree(http.send(HttpRequest.newBuilder(URI.create(engine.url() + route))
        .build(), HttpResponse.BodyHandlers.ofString()).body());
  }

  private static String update(Path folder) {
    return "{\"update_info\": {\"path\": \"" + folder.toAbsolutePath() + "\"}}";
  }

  @Test
  void aCompleteSessionLoadsTheFolderAndCommitsTheVersionAtFinish() throws Exception {
    assertThat(post("/pause?mode=keep", "").status()).isEqualTo(200);
    assertThat(engine.paused()).isTrue();
    assertThat(post("/init_weight_transfer_engine", "{\"init_info\": {}}").status()).isEqualTo(200);
    assertThat(post("/start_weight_update", "{}").status()).isEqualTo(200);
    assertThat(engine.mixed()).as("the layers are being reloaded").isTrue();
    assertThat(post("/update_weights", update(Launcher.golden("fp8"))).status()).isEqualTo(200);
    assertThat(engine.weightVersion()).as("committed at finish, not before").isEqualTo("initial");
    Answer f = post("/finish_weight_update", "{\"weight_version\": \"v7\"}");
    assertThat(f.status()).isEqualTo(200);
    assertThat(f.body().path("weight_gen").asInt()).isEqualTo(1);
    assertThat(get("/weight_info").path("weight_version").asText()).isEqualTo("v7");
    assertThat(engine.loadedTensors()).isEqualTo(37);
    assertThat(engine.mixed()).isFalse();
    assertThat(post("/resume", "").status()).isEqualTo(200);
    assertThat(engine.paused()).isFalse();
    assertThat(engine.violations()).isZero();
    assertThat(engine.calls().get(0).query()).isEqualTo("mode=keep");
  }

  @Test
  void theOrderingRulesAnswer409AndAStartNeedsTheInit() throws Exception {
    assertThat(post("/pause?mode=sleep", "").status()).isEqualTo(400);
    assertThat(post("/update_weights", update(Launcher.golden("fp8"))).status()).isEqualTo(409);
    assertThat(post("/finish_weight_update", "{}").status()).isEqualTo(409);
    assertThat(post("/start_weight_update", "{}").status()).as("not initialized").isEqualTo(500);
    assertThat(post("/init_weight_transfer_engine", "{}").status()).as("no init_info")
        .isEqualTo(400);
    assertThat(post("/init_weight_transfer_engine", "{\"init_info\": {}}").status()).isEqualTo(200);
    assertThat(post("/start_weight_update", "{}").status()).isEqualTo(200);
    assertThat(post("/start_weight_update", "{}").status()).isEqualTo(409);
    assertThat(post("/finish_weight_update", "{}").body().path("detail").asText())
        .contains("No checkpoint was loaded");
  }

  @Test
  void aFailedLoadLeavesTheEngineMixedAndStuckInItsUpdate() throws Exception {
    post("/init_weight_transfer_engine", "{\"init_info\": {}}");
    post("/pause", "");
    post("/start_weight_update", "{}");
    Answer bad = post("/update_weights", update(tmp.resolve("missing")));
    assertThat(bad.status()).isEqualTo(500);
    assertThat(bad.body().path("detail").asText()).contains("must be a local directory");
    assertThat(engine.mixed()).isTrue();
    assertThat(post("/finish_weight_update", "{}").body().path("detail").asText())
        .contains("No shared-disk weight update is active");
    assertThat(post("/start_weight_update", "{}").status()).as("still in progress for HTTP")
        .isEqualTo(409);
    post("/resume", "");
    assertThat(engine.violations()).as("resumed over weights that may be a mix").isEqualTo(1);
  }

  @Test
  void aFolderWhoseScalesDoNotFitItsWeightsIsRefused() throws Exception {
    Path bad = Files.createDirectories(tmp.resolve("bad"));
    try (Stream<Path> s = Files.list(Launcher.golden("fp8"))) {
      for (Path f : s.toList()) {
        Files.copy(f, bad.resolve(f.getFileName()));
      }
    }
    // the config without its quantization_config: FP8 tensors the loader cannot place
    JsonNode config = JSON.readTree(bad.resolve("config.json").toFile());
    ((com.fasterxml.jackson.databind.node.ObjectNode) config).remove("quantization_config");
    Files.writeString(bad.resolve("config.json"), config.toString());
    post("/init_weight_transfer_engine", "{\"init_info\": {}}");
    post("/start_weight_update", "{}");
    Answer a = post("/update_weights", update(bad));
    assertThat(a.status()).isEqualTo(500);
    assertThat(a.body().path("detail").asText()).contains("no quantization_config");
  }

  @Test
  void oneCheckpointPerSessionAndTheNextSessionBringsItBack() throws Exception {
    post("/init_weight_transfer_engine", "{\"init_info\": {}}");
    post("/start_weight_update", "{}");
    assertThat(post("/update_weights", update(Launcher.golden("int4_g32"))).status())
        .isEqualTo(200);
    Answer second = post("/update_weights", update(Launcher.golden("int4_g32")));
    assertThat(second.body().path("detail").asText()).contains("exactly one checkpoint");
    assertThat(post("/update_weight_version", "{\"new_version\": \"label\"}").body()
        .path("new_version").asText()).isEqualTo("label");
    assertThat(get("/weight_info").path("weight_version").asText()).isEqualTo("label");
  }
}
