package dev.weightsync.server.config;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ConfigLoaderTest {

  @TempDir Path tmp;

  @Test
  void defaultsWorkAsDocumented() throws Exception {
    SidecarConfig c = ConfigLoader.load(null, Map.of(), Map.of());
    assertThat(c.port()).isEqualTo(50051);
    assertThat(c.metricsPort()).isEqualTo(9464);
    assertThat(c.format()).isNull();
    assertThat(c.stagingDir()).isEqualTo(Path.of("/dev/shm/weightsync"));
    assertThat(c.partTimeout()).isEqualTo(Duration.ofSeconds(300));
    assertThat(c.engineBackoff()).isEqualTo(Duration.ofMillis(200));
    assertThat(c.sglangUrls()).isEmpty();
    assertThat(c.pauseMode()).isEqualTo(PauseMode.ABORT);
  }

  @Test
  void gRpcListensOnLoopbackAndAnOpenAddressOthersCanReachNeedsAuthOrInsecure(@TempDir Path d)
      throws Exception {
    SidecarConfig c = ConfigLoader.load(null, Map.of(), Map.of());
    assertThat(c.listenAddresses()).extracting(ListenAddress::toString)
        .containsExactly("127.0.0.1:50051");
    assertThat(c.stagingReserve()).as("auto").isEqualTo(-1);
    assertThat(c.headerTimeout()).isEqualTo(Duration.ofSeconds(30));
    assertThat(c.maxStreamsPerCaller()).isEqualTo(64);
    assertThatThrownBy(() -> ConfigLoader.load(null, Map.of(), Map.of("listen",
        List.of("unix:///tmp/x.sock", "0.0.0.0:50051"))))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("listen 0.0.0.0:50051 is reachable from other hosts")
        .hasMessageContaining("auth-token-file or mutual TLS")
        .hasMessageContaining("--insecure");
    assertThat(ConfigLoader.load(null, Map.of("WEIGHTSYNC_LISTEN", "[::1]:1,localhost:2,"
        + "unix:///tmp/y.sock"), Map.of()).listenAddresses()).hasSize(3);
    assertThat(ConfigLoader.load(null, Map.of(), Map.of("listen", List.of("0.0.0.0:50051"),
        "insecure", true)).insecure()).isTrue();
    Path tokens = Files.writeString(d.resolve("tokens"), "t\n");
    assertThat(ConfigLoader.load(null, Map.of("WEIGHTSYNC_LISTEN", "0.0.0.0:50051"),
        Map.of("auth-token-file", tokens.toString())).listenAddresses()).hasSize(1);
  }

  @Test
  void fileThenEnvironmentThenFlags() throws Exception {
    Path f = tmp.resolve("c.yaml");
    Files.writeString(f, "port: 6000\nformat: int4-group\ngroup-size: 32\nsglang-url: http://a:1\n"
        + "part-timeout: 5m\nstaging-dir: /tmp/s\n");
    SidecarConfig c = ConfigLoader.load(f,
        Map.of("WEIGHTSYNC_PORT", "7000", "WEIGHTSYNC_SGLANG_URL", "http://b:1,http://c:1"),
        Map.of("staging-dir", "/tmp/flag"));
    assertThat(c.port()).isEqualTo(7000);
    assertThat(c.groupSize()).isEqualTo(32);
    assertThat(c.sglangUrls()).containsExactly("http://b:1", "http://c:1");
    assertThat(c.partTimeout()).isEqualTo(Duration.ofMinutes(5));
    assertThat(c.stagingDir()).isEqualTo(Path.of("/tmp/flag"));
    assertThat(ConfigLoader.load(f, Map.of(), Map.of("sglang-url", List.of("http://x:2"))).sglangUrls())
        .containsExactly("http://x:2");
  }

  @Test
  void unknownKeysAndBadValuesAreClearErrors() throws Exception {
    Path f = tmp.resolve("bad.yaml");
    Files.writeString(f, "prot: 1\n");
    assertThatThrownBy(() -> ConfigLoader.load(f, Map.of(), Map.of()))
        .hasMessageContaining("unknown config key 'prot'");
    assertThatThrownBy(() -> ConfigLoader.load(null, Map.of(), Map.of("pause-mode", "sleep")))
        .hasMessage("invalid value for pause-mode (from --pause-mode): pause-mode must be abort,"
            + " retract or in_place, got sleep");
    assertThatThrownBy(() -> ConfigLoader.load(null, Map.of("WEIGHTSYNC_GPU_FAILURE", "retry"),
        Map.of())).hasMessageContaining("gpu-failure must be cpu or fail, got retry")
        .hasMessageContaining("WEIGHTSYNC_GPU_FAILURE");
    assertThatThrownBy(() -> ConfigLoader.load(null, Map.of(), Map.of("part-timeout", "soon")))
        .hasMessageContaining("not a duration");
    assertThatThrownBy(() -> ConfigLoader.load(null, Map.of(), Map.of("format", "fp4")))
        .hasMessageContaining("unknown format 'fp4'");
    assertThatThrownBy(() -> ConfigLoader.load(null, Map.of(), Map.of("sglang-url", List.of("a:1"))))
        .hasMessageContaining("http://");
    assertThatThrownBy(() -> ConfigLoader.load(null, Map.of(), Map.of("device", "cuda:any")))
        .hasMessageContaining("device must be auto, cpu, cuda, cuda:N or cuda:all, got cuda:any");
    assertThatThrownBy(() -> ConfigLoader.load(null, Map.of(), Map.of("device", "cuda:all",
        "bytes-gpu", "gpu1"))).hasMessageContaining("bytes-gpu must be least-busy or cuda:N");
    assertThatThrownBy(() -> ConfigLoader.load(null, Map.of(), Map.of("device", "cuda",
        "bytes-gpu", "cuda:1"))).hasMessageContaining("device cuda:all; device is cuda");
  }

  @Test
  void bytesGpuIsAnOrdinalOfCudaAllOrTheLeastBusy() throws Exception {
    assertThat(ConfigLoader.load(null, Map.of(), Map.of()).bytesGpuOrdinal())
        .isEqualTo(dev.weightsync.server.quant.MultiGpuQuantizer.LEAST_BUSY);
    assertThat(ConfigLoader.load(null, Map.of("WEIGHTSYNC_BYTES_GPU", "cuda:3"),
        Map.of("device", "CUDA:ALL")).bytesGpuOrdinal()).isEqualTo(3);
  }

  @Test
  void namedChoicesLoadAsTheirEnumsAndPrintAsTheirNames() throws Exception {
    SidecarConfig c = ConfigLoader.load(null, Map.of(), Map.of("pause-mode", "in_place",
        "gpu-failure", "fail", "policy", "quorum"));
    assertThat(c.pauseMode()).isEqualTo(PauseMode.IN_PLACE);
    assertThat(c.gpuFailure()).isEqualTo(GpuFailure.FAIL);
    assertThat(c.policy()).isEqualTo(Policy.QUORUM);
    assertThat(c.role()).isEqualTo(Role.BOTH);
    assertThat(c.toString()).contains("pause-mode=in_place", "gpu-failure=fail", "policy=quorum",
        "role=both");
  }

  @Test
  void theAdminKeyNeverAppearsInTheConfigsText() throws Exception {
    SidecarConfig c = ConfigLoader.load(null, Map.of(), Map.of("sglang-admin-key", "hunter2"));
    assertThat(c.toString()).doesNotContain("hunter2").contains("(set)");
  }
}
