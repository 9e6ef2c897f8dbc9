package dev.weightsync.it;

import static org.assertj.core.api.Assertions.assertThat;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code weightsync resume}: an operator releases an engine the sidecar keeps paused — one that
 * may hold a mix of two versions only with --accept-mixed; authenticated, counted.
 */
class OperatorResumeIT {

  @TempDir Path tmp;

  @Test
  void aPossiblyMixedEngineIsReleasedOnlyWithAcceptMixedAndOnlyForAnAcceptedToken() throws Exception {
    Path tokens = Files.writeString(tmp.resolve("tokens"), "op-token\n");
    Path tokenFile = Files.writeString(tmp.resolve("client-token"), "op-token\n");
    try (SidecarHarness h = new SidecarHarness(tmp, Map.of("metrics-port", 0,
        "auth-token-file", tokens.toString()), null, "op-token")) {
      String target = "127.0.0.1:" + h.sidecar.port();
      h.engine.faults(f -> f.loadFailsForever = true);
      try {
        h.client.pushFolder(Launcher.golden("bf16"), "bad", 0, 1);
      } catch (io.grpc.StatusRuntimeException expected) {
        // the load fails: left paused, possibly mixed
      }
      assertThat(h.engine.paused()).isTrue();
      assertThat(h.client.status().getEngines(0).getState()).isEqualTo("MAYBE_MIXED");

      Launcher.Result noToken = Launcher.weightsync("resume", "--target", target, "--engine",
          h.engine.url(), "--accept-mixed");
      assertThat(noToken.exitCode()).isEqualTo(1);
      assertThat(noToken.stderr()).contains("UNAUTHENTICATED");

      Launcher.Result refused = Launcher.weightsync("resume", "--target", target, "--engine",
          h.engine.url(), "--auth-token-file", tokenFile.toString());
      assertThat(refused.exitCode()).isEqualTo(1);
      assertThat(refused.stderr()).contains("FAILED_PRECONDITION").contains("--accept-mixed");
      assertThat(h.engine.paused()).isTrue();
      assertThat(h.engine.violations()).isZero();

      Launcher.Result unknown = Launcher.weightsync("resume", "--target", target, "--engine",
          "http://nowhere:1", "--auth-token-file", tokenFile.toString());
      assertThat(unknown.stderr()).contains("NOT_FOUND").contains(h.engine.url());

      Launcher.Result released = Launcher.weightsync("resume", "--target", target, "--engine",
          h.engine.url(), "--accept-mixed", "--auth-token-file", tokenFile.toString());
      assertThat(released.exitCode()).as(released.stderr()).isZero();
      assertThat(released.stdout()).contains("SERVING_MIXED");
      assertThat(h.engine.paused()).isFalse();
      assertThat(h.engine.violations()).as("the one resume an operator chose").isEqualTo(1);
      assertThat(h.client.status().getEngines(0).getState()).isEqualTo("SERVING_MIXED");
      String metrics = HttpClient.newHttpClient().send(HttpRequest.newBuilder(URI.create(
          "http://127.0.0.1:" + h.sidecar.httpPort() + "/metrics")).build(),
          HttpResponse.BodyHandlers.ofString()).body();
      assertThat(metrics).containsPattern("weightsync_engine_operator_resumes_total\\{"
          + "accept_mixed=\"true\",engine=\"" + java.util.regex.Pattern.quote(h.engine.url())
          + "\"[^}]*\\} 1\\.0");
      assertThat(metrics).contains("weightsync_engine_state{engine=\"" + h.engine.url()
          + "\",state=\"SERVING_MIXED\"} 1.0");

      h.engine.faults(f -> f.loadFailsForever = false);
      h.client.pushFolder(Launcher.golden("bf16"), "good", 0, 1); // a version that loads
      assertThat(h.client.status().getEngines(0).getState()).isEqualTo("SERVING");
    }
  }
}
