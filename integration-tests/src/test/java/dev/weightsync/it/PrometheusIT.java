package dev.weightsync.it;

import static dev.weightsync.it.RawStream.chunk;
import static dev.weightsync.it.RawStream.commit;
import static dev.weightsync.it.RawStream.header;
import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.net.ServerSocket;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A real Prometheus (Debian's package, installed by .ci/run) scrapes a running sidecar every
 * second; after scripted updates, some failing, its query API must show exactly what happened, and
 * every query of the Grafana dashboard must evaluate.
 */
class PrometheusIT {

  private static final ObjectMapper JSON = new ObjectMapper();
  private static final HttpClient HTTP = HttpClient.newHttpClient();

  @TempDir Path tmp;

  @Test
  void prometheusSeesEveryUpdateAndWhyItFailed() throws Exception {
    Path prometheus = Path.of("/usr/bin/prometheus");
    Tools.require(Tools.PROMETHEUS, Files.isExecutable(prometheus),
        "no /usr/bin/prometheus (apt-get install prometheus; .ci/run does)");
    try (SidecarHarness h = new SidecarHarness(tmp, Map.of("format", "fp8-block", "metrics-port", 0))) {
      int promPort;
      try (ServerSocket s = new ServerSocket(0)) {
        promPort = s.getLocalPort();
      }
      Path config = tmp.resolve("prometheus.yml");
      Files.writeString(config, "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
          + "scrape_configs:\n  - job_name: weightsync\n    static_configs:\n"
          + "      - targets: ['127.0.0.1:" + h.sidecar.httpPort() + "']\n");
      Process prom = Launcher.start(new ProcessBuilder(prometheus.toString(), "--config.file=" + config,
          "--storage.tsdb.path=" + tmp.resolve("tsdb"),
          "--web.listen-address=127.0.0.1:" + promPort)
          .redirectErrorStream(true).redirectOutput(tmp.resolve("prometheus.log").toFile()));
      try {
        String api = "http://127.0.0.1:" + promPort;
        double successSeconds = 0;
        for (int i = 1; i <= 3; i++) {
          successSeconds += h.client.pushFolder(Launcher.golden("bf16"), String.valueOf(i), 0, 1)
              .getTimings().getTotalSeconds();
        }
        float[] nan = new float[32];
        nan[3] = Float.NaN;
        try (RawStream raw = new RawStream(h.sidecar.port())) {
          Status s = raw.send(List.of(header("nan", 0, 1), chunk("m.layers.0.mlp.up_proj.weight",
              "BF16", new long[] {4, 8}, 0, BadInputAndEngineFaultsIT.bf16(nan)), commit(1, 64)),
              true, false);
          assertThat(s.getCode()).isEqualTo(Status.Code.INVALID_ARGUMENT);
        }
        h.engine.faults(f -> f.loadFailsForever = true);
        try {
          h.client.pushFolder(Launcher.golden("bf16"), "4", 0, 1);
        } catch (StatusRuntimeException expected) {
          assertThat(expected.getStatus().getCode()).isEqualTo(Status.Code.INTERNAL);
        }

        String engineFailed = "weightsync_update_duration_seconds_count{phase=\"total\",outcome=\"engine_failed\"}";
        awaitValue(api, engineFailed, 1);
        assertThat(value(api, "weightsync_update_duration_seconds_count{phase=\"total\",outcome=\"success\"}"))
            .isEqualTo(3);
        assertThat(value(api, "weightsync_update_duration_seconds_count{phase=\"total\",outcome=\"invalid_argument\"}"))
            .isEqualTo(1);
        assertThat(value(api, "sum(weightsync_update_duration_seconds_count{phase=\"total\"})"))
            .isEqualTo(5);
        assertThat(value(api, "weightsync_update_duration_seconds_sum{phase=\"total\",outcome=\"success\"}"))
            .isCloseTo(successSeconds, org.assertj.core.data.Offset.offset(1e-3));
        for (String phase : List.of("receive", "quantize", "stage", "engine")) {
          assertThat(value(api, "weightsync_update_duration_seconds_count{phase=\"" + phase
              + "\",outcome=\"success\"}")).as(phase).isEqualTo(3);
        }
        assertThat(value(api, "weightsync_engine_failures_total{reason=\"load\"}")).isEqualTo(1);
        Launcher.Counts in = Launcher.counts(Launcher.golden("bf16"));
        Launcher.Counts out = Launcher.counts(Launcher.golden("fp8"));
        assertThat(value(api, "weightsync_ingest_bytes_total")).isEqualTo(4 * in.bytes() + 64);
        assertThat(value(api, "weightsync_output_bytes_total")).isEqualTo(4 * out.bytes());
        assertThat(value(api, "weightsync_tensors_total{direction=\"in\"}")).isEqualTo(4 * in.tensors());
        assertThat(value(api, "weightsync_weight_version")).isEqualTo(3);
        assertThat(value(api, "weightsync_quantizer_device{device=\"cpu\"}")).isEqualTo(1);
        assertThat(value(api, "weightsync_updates_in_flight")).isZero();
        assertThat(value(api, "weightsync_staging_bytes")).isPositive();
        assertThat(value(api, "weightsync_staging_mapped_bytes")).isNotNegative();
        assertThat(value(api, "count(jvm_memory_used_bytes)")).isPositive();
        assertThat(value(api, "sum(grpc_server_requests_received_messages_total)")).isPositive();

        JsonNode dashboard = JSON.readTree(Launcher.root()
            .resolve("k8s/base/grafana-dashboard.json").toFile());
        List<String> exprs = new ArrayList<>();
        dashboard.get("panels").forEach(p -> p.get("targets").forEach(t -> exprs.add(t.get("expr").asText())));
        assertThat(exprs).hasSizeGreaterThan(8);
        for (String e : exprs) {
          JsonNode r = query(api, e);
          assertThat(r.path("status").asText()).as(e + " -> " + r).isEqualTo("success");
        }
        assertThat(query(api, "weightsync_weight_version_age_seconds").at("/data/result").size()).isEqualTo(1);
      } finally {
        prom.destroy();
        prom.waitFor();
      }
    }
  }

  private static JsonNode query(String api, String promql) throws Exception {
    HttpResponse<String> r = HTTP.send(HttpRequest.newBuilder(URI.create(api + "/api/v1/query?query="
        + URLEncoder.encode(promql, StandardCharsets.UTF_8))).build(), HttpResponse.BodyHandlers.ofString());
    return JSON.readTree(r.body());
  }

  private static double value(String api, String promql) throws Exception {
    JsonNode result = query(api, promql).at("/data/result");
    assertThat(result.size()).as(promql + " -> " + result).isEqualTo(1);
    return result.get(0).get("value").get(1).asDouble();
  }

  /** Waits until Prometheus has stored a scrape of the sidecar taken after {@code millis}. */
  private static void awaitScrapeAfter(String api, long millis) throws Exception {
    for (long end = System.nanoTime() + 30_000_000_000L; System.nanoTime() < end; ) {
      JsonNode result = query(api, "timestamp(up)").at("/data/result");
      if (result.size() == 1 && result.get(0).get("value").get(1).asDouble() * 1000 > millis) {
        return;
      }
      Thread.sleep(50);
    }
    throw new AssertionError("Prometheus stored no scrape after " + millis);
  }

  /** Waits until Prometheus has scraped the last update. */
  private static void awaitValue(String api, String promql, double expected) throws Exception {
    for (int i = 0; i < 300; i++) {
      try {
        JsonNode result = query(api, promql).at("/data/result");
        if (result.size() == 1 && result.get(0).get("value").get(1).asDouble() == expected) {
          awaitScrapeAfter(api, System.currentTimeMillis()); // every series from after the update
          return;
        }
      } catch (java.io.IOException notYetUp) {
        // Prometheus is still starting
      }
      Thread.sleep(100);
    }
    throw new AssertionError("Prometheus never showed " + promql + " = " + expected);
  }
}
