package dev.weightsync.server.metrics;

import static org.assertj.core.api.Assertions.assertThat;

import dev.weightsync.core.quant.QuantError;
import dev.weightsync.server.engine.EngineOutcome;
import dev.weightsync.server.engine.EngineResult;
import dev.weightsync.server.pipeline.VersionOutcome;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;

class SyncMetricsTest {

  private static VersionOutcome outcome(String version, EngineOutcome engine, String step) {
    return new VersionOutcome(version, Path.of("/tmp/x"), 1000, 500, 3, 5,
        new QuantError(0.25, 4, 16, 10), 1.5, 0.5, 0.1, 2.0, 3.75,
        List.of(new EngineResult("http://e:1", engine, version, "", 2.0, step)));
  }

  @Test
  void scriptedUpdatesGiveTheExpectedSeries() {
    PrometheusMeterRegistry r = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
    SyncMetrics m = new SyncMetrics(r, "cpu", () -> 2, () -> 12345);
    m.bytesReceived(600);
    m.bytesReceived(400);
    m.versionDelivered(outcome("step-41", EngineOutcome.LOADED, ""));
    m.versionDelivered(outcome("42", EngineOutcome.FAILED_PAUSED, "load"));
    m.updateFailed("invalid_argument", 0.2);
    String text = r.scrape();
    assertThat(text)
        .contains("weightsync_ingest_bytes_total 1000.0")
        .contains("weightsync_output_bytes_total 1000.0")
        .contains("weightsync_tensors_total{direction=\"in\"} 6.0")
        .contains("weightsync_tensors_total{direction=\"out\"} 10.0")
        .contains("weightsync_update_duration_seconds_count{outcome=\"success\",phase=\"total\"} 1")
        .contains("weightsync_update_duration_seconds_sum{outcome=\"success\",phase=\"total\"} 3.75")
        .contains("weightsync_update_duration_seconds_count{outcome=\"engine_failed\",phase=\"engine\"} 1")
        .contains("weightsync_update_duration_seconds_count{outcome=\"invalid_argument\",phase=\"total\"} 1")
        .contains("weightsync_update_duration_seconds_bucket{outcome=\"success\",phase=\"total\",le=\"5.0\"} 1")
        .contains("weightsync_update_duration_seconds_bucket{outcome=\"success\",phase=\"total\",le=\"2.5\"} 0")
        .contains("weightsync_engine_failures_total{engine=\"http://e:1\",reason=\"load\"} 1.0")
        .contains("weightsync_engine_push_duration_seconds_count{engine=\"http://e:1\",outcome=\"failed_paused\"} 1")
        .contains("weightsync_weight_version 41.0") // the failed 42 did not load
        .contains("weightsync_quantization_error{stat=\"max_abs\"} 0.25")
        .contains("weightsync_quantization_error{stat=\"rel_rms\"} 0.5")
        .contains("weightsync_updates_in_flight 2.0")
        .contains("weightsync_staging_bytes 12345.0")
        .contains("weightsync_quantizer_device{device=\"cpu\"} 1.0")
        .doesNotContain("step-41");
  }

  @Test
  void versionsBecomeNumbersWhereTheyCan() {
    assertThat(SyncMetrics.numeric("120")).isEqualTo(120);
    assertThat(SyncMetrics.numeric("step-100")).isEqualTo(100);
    assertThat(SyncMetrics.numeric("rc")).isNaN();
  }
}
