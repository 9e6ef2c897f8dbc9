package dev.weightsync.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.weightsync.client.WeightSyncClient;
import dev.weightsync.proto.v1.EngineOutcome;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.health.v1.HealthGrpc;
import io.grpc.netty.NettyChannelBuilder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Bearer tokens: no token, a wrong one and a right one; health stays open. */
class AuthIT {

  @TempDir Path tmp;

  @Test
  void updatesAndStatusNeedAnAcceptedToken() throws Exception {
    Path tokens = tmp.resolve("tokens");
    Files.writeString(tokens, "# trainers\nalpha-token\n\nbeta-token\n");
    try (SidecarHarness h = new SidecarHarness(tmp, Map.of("auth-token-file", tokens.toString()))) {
      String target = "127.0.0.1:" + h.sidecar.port();
      // h.client sends no token
      assertThatThrownBy(() -> h.client.pushFolder(Launcher.golden("bf16"), "1", 0, 1))
          .isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
            assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.UNAUTHENTICATED);
            assertThat(e.getStatus().getDescription()).contains("missing bearer token");
          });
      try (WeightSyncClient wrong = WeightSyncClient.connect(target, "gamma-token")) {
        assertThatThrownBy(wrong::status).isInstanceOfSatisfying(StatusRuntimeException.class,
            e -> assertThat(e.getStatus().getDescription()).contains("not accepted"));
      }
      assertThat(h.engine.routes()).isEmpty();
      assertThat(h.stagingEntries()).isEmpty(); // refused before any byte was taken
      try (WeightSyncClient right = WeightSyncClient.connect(target, "beta-token")) {
        var r = right.pushFolder(Launcher.golden("bf16"), "2", 0, 1);
        assertThat(r.getEngines(0).getOutcome()).isEqualTo(EngineOutcome.LOADED);
        assertThat(right.status().getLastVersion()).isEqualTo("2");
      }
      ManagedChannel ch = NettyChannelBuilder.forTarget(target).usePlaintext().build();
      try {
        assertThat(HealthGrpc.newBlockingStub(ch).check(HealthCheckRequest.getDefaultInstance())
            .getStatus()).isEqualTo(ServingStatus.SERVING);
      } finally {
        ch.shutdownNow();
      }

      Path tokenFile = tmp.resolve("client-token");
      Files.writeString(tokenFile, "alpha-token\n");
      Launcher.Result cli = Launcher.weightsync("status", "--target", target,
          "--auth-token-file", tokenFile.toString());
      assertThat(cli.exitCode()).as(cli.stderr()).isZero();
      assertThat(cli.stdout()).contains("last loaded version '2'");
      Launcher.Result none = Launcher.weightsync("status", "--target", target);
      assertThat(none.exitCode()).isNotZero();
      assertThat(none.stderr()).contains("UNAUTHENTICATED");
      if (PythonClientIT.available()) {
        Launcher.Result py = Launcher.run(List.of("/usr/bin/python3", "-c",
            "import sys; sys.path.insert(0, '" + Launcher.root().resolve("client/python") + "');"
                + " import weightsync_client as ws;"
                + " print(ws.status('" + target + "', token='alpha-token').last_version)"), 60);
        assertThat(py.exitCode()).as(py.stderr()).isZero();
        assertThat(py.stdout().trim()).isEqualTo("2");
      }
    }
  }
}
