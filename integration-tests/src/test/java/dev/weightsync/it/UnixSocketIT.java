package dev.weightsync.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.weightsync.client.WeightSyncClient;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.ServerSocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The sidecar on a Unix-domain socket (listen unix:///PATH), the trainer-to-sidecar hop on one
 * node: mode 0660, the same answers and bytes as over TCP, a token still asked for where one is
 * configured, a socket file left by a dead process replaced, a live one refused, the file removed
 * on stop.
 */
class UnixSocketIT {

  @TempDir Path tmp;

  @Test
  void aVersionOverTheSocketIsTheGoldenFolderAndTheFileIsOwnerAndGroupOnly() throws Exception {
    Path socket = tmp.resolve("grpc.sock");
    try (SidecarHarness h = new SidecarHarness(tmp, Map.of("listen", List.of("unix://" + socket,
        "127.0.0.1:0")))) {
      assertThat(PosixFilePermissions.toString(Files.getPosixFilePermissions(socket)))
          .isEqualTo("rw-rw----");
      assertThat(h.sidecar.port()).as("the TCP address beside it").isPositive();
      try (WeightSyncClient c = WeightSyncClient.connect("unix://" + socket)) {
        var r = c.pushFolderParallel(Launcher.golden("bf16"), "over-uds", 2);
        assertThat(r.getEngines(0).getOutcome().name()).isEqualTo("LOADED");
        assertThat(c.status().getLastVersion()).isEqualTo("over-uds");
      }
      assertThat(Launcher.compare(Launcher.golden("fp8"), h.staging.resolve("over-uds")).exitCode())
          .isZero();
    }
    assertThat(socket).as("removed on stop").doesNotExist();
  }

  @Test
  void aTokenIsAskedForOnTheSocketToo() throws Exception {
    Path socket = tmp.resolve("grpc.sock");
    Path tokens = Files.writeString(tmp.resolve("tokens"), "s3cret\n");
    try (SidecarHarness h = new SidecarHarness(tmp, Map.of("listen", List.of("unix://" + socket),
        "auth-token-file", tokens.toString()), null, "s3cret")) {
      try (WeightSyncClient anonymous = WeightSyncClient.connect("unix://" + socket)) {
        assertThatThrownBy(anonymous::status).isInstanceOfSatisfying(StatusRuntimeException.class,
            e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.UNAUTHENTICATED));
      }
      try (WeightSyncClient c = WeightSyncClient.connect("unix://" + socket, "s3cret")) {
        assertThat(c.status().getRole()).isEqualTo("both");
      }
      assertThat(h.sidecar.port()).as("no TCP address").isEqualTo(-1);
    }
  }

  @Test
  void aDeadProcessesSocketIsReplacedAndALiveOneRefused() throws Exception {
    Path socket = tmp.resolve("grpc.sock");
    try (ServerSocketChannel dead = ServerSocketChannel.open(java.net.StandardProtocolFamily.UNIX)) {
      dead.bind(UnixDomainSocketAddress.of(socket));
    } // closed: the file stays, as a killed process leaves it
    assertThat(socket).exists();
    try (SidecarHarness h = new SidecarHarness(tmp.resolve("a"), Map.of("listen",
        List.of("unix://" + socket)))) {
      try (WeightSyncClient c = WeightSyncClient.connect("unix://" + socket)) {
        assertThat(c.reachable(java.time.Duration.ofSeconds(10))).isTrue();
      }
      assertThatThrownBy(() -> new SidecarHarness(tmp.resolve("b"), Map.of("listen",
          List.of("unix://" + socket))))
          .hasMessageContaining("unix://" + socket).hasMessageContaining("in use");
      try (WeightSyncClient c = WeightSyncClient.connect("unix://" + socket)) {
        assertThat(c.reachable(java.time.Duration.ofSeconds(10))).as("the first still serves").isTrue();
      }
    }
  }
}
