package dev.weightsync.it;

import static org.assertj.core.api.Assertions.assertThat;

import dev.weightsync.server.Sidecar;
import io.grpc.ManagedChannel;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.health.v1.HealthGrpc;
import io.grpc.netty.NettyChannelBuilder;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Liveness and readiness over HTTP and the gRPC health service agree. */
class HealthIT {

  @TempDir Path tmp;

  private static HttpResponse<String> get(int port, String path) throws Exception {
    return HttpClient.newHttpClient().send(HttpRequest.newBuilder(
        URI.create("http://127.0.0.1:" + port + path)).build(), HttpResponse.BodyHandlers.ofString());
  }

  @Test
  void readyOnlyWhileTheEnginesAnswer() throws Exception {
    try (SidecarHarness h = new SidecarHarness(tmp, Map.of("metrics-port", 0))) {
      int http = h.sidecar.httpPort();
      ManagedChannel ch = NettyChannelBuilder.forAddress("127.0.0.1", h.sidecar.port()).usePlaintext().build();
      try {
        var health = HealthGrpc.newBlockingStub(ch);
        assertThat(get(http, "/healthz").statusCode()).isEqualTo(200);
        assertThat(get(http, "/readyz").statusCode()).isEqualTo(200);
        assertThat(health.check(HealthCheckRequest.newBuilder().setService("").build()).getStatus())
            .isEqualTo(ServingStatus.SERVING);
        assertThat(health.check(HealthCheckRequest.newBuilder().setService(Sidecar.SERVICE).build())
            .getStatus()).isEqualTo(ServingStatus.SERVING);
        assertThat(get(http, "/metrics").body()).contains("weightsync_updates_in_flight");
        // What the image's HEALTHCHECK runs, as a process.
        String target = "127.0.0.1:" + h.sidecar.port();
        Launcher.Result live = Launcher.weightsync("health", "--target", target);
        assertThat(live.exitCode()).as(live.stdout() + live.stderr()).isZero();
        assertThat(live.stdout()).contains("SERVING");

        h.engine.close(); // the engine goes away
        HttpResponse<String> ready = get(http, "/readyz");
        assertThat(ready.statusCode()).isEqualTo(503);
        assertThat(ready.body()).contains("engines not answering /health").contains(h.engine.url());
        assertThat(health.check(HealthCheckRequest.newBuilder().setService(Sidecar.SERVICE).build())
            .getStatus()).isEqualTo(ServingStatus.NOT_SERVING);
        assertThat(get(http, "/healthz").statusCode()).isEqualTo(200); // alive all the same
        Launcher.Result notReady = Launcher.weightsync("health", "--target", target,
            "--service", Sidecar.SERVICE);
        assertThat(notReady.exitCode()).isEqualTo(1);
        assertThat(notReady.stdout()).contains("NOT_SERVING");
        // status agrees: the engine is UNREACHABLE, with what was known of it before
        assertThat(h.client.status().getEngines(0).getState()).isEqualTo("UNREACHABLE");
        assertThat(h.client.status().getEngines(0).getLastError())
            .contains("not answering /health (last known state UNKNOWN)"); // never updated yet
        Launcher.Result status = Launcher.weightsync("status", "--target", target);
        assertThat(status.stdout()).contains(h.engine.url() + ": UNREACHABLE");
        assertThat(Launcher.weightsync("health", "--target", target).exitCode()).isZero();
      } finally {
        ch.shutdownNow();
      }
    }
  }

  @Test
  void shutdownLetsAVersionInDeliveryFinishAndLeavesTheEngineServing() throws Exception {
    try (SidecarHarness h = new SidecarHarness(tmp, Map.of("shutdown-grace", "30s"))) {
      h.engine.faults(f -> f.slowMillis = 300);
      var push = java.util.concurrent.CompletableFuture.supplyAsync(() -> {
        try {
          return h.client.pushFolder(Launcher.golden("bf16"), "last", 0, 1);
        } catch (java.io.IOException e) {
          throw new java.io.UncheckedIOException(e);
        }
      });
      for (int i = 0; i < 200 && !h.engine.routes().contains("/flush_cache"); i++) {
        Thread.sleep(25);
      }
      assertThat(h.engine.paused()).isTrue(); // mid-session
      h.sidecar.close(); // what SIGTERM does
      assertThat(push.get().getEngines(0).getOutcome())
          .isEqualTo(dev.weightsync.proto.v1.EngineOutcome.LOADED);
      assertThat(h.engine.paused()).isFalse();
      assertThat(h.engine.weightVersion()).isEqualTo("last");
    }
  }
}
