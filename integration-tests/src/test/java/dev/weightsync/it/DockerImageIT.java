package dev.weightsync.it;

import static org.assertj.core.api.Assertions.assertThat;

import dev.weightsync.client.WeightSyncClient;
import dev.weightsync.proto.v1.EngineOutcome;
import dev.weightsync.proto.v1.UpdateWeightsResponse;
import java.time.Duration;
import org.junit.jupiter.api.Test;
import org.testcontainers.DockerClientFactory;
import org.testcontainers.containers.Container.ExecResult;
import org.testcontainers.containers.GenericContainer;
import org.testcontainers.containers.wait.strategy.Wait;
import org.testcontainers.images.builder.ImageFromDockerfile;

/**
 * Builds {@code docker/Dockerfile} and pushes a model through the image: the sidecar and a
 * stand-in engine run in the container as its non-root user; the image's HEALTHCHECK must pass.
 * Without a Docker engine (here and in CI) it skips: the launcher, the health command the
 * HEALTHCHECK runs and the serve/push path are covered by ProcessesIT and HealthIT.
 */
class DockerImageIT {

  @Test
  void theImageServesAPushAsItsNonRootUser() throws Exception {
    Tools.require(Tools.DOCKER, DockerClientFactory.instance().isDockerAvailable(),
        "no Docker engine on this machine (CI has none either); the processes inside the"
            + " image are covered by ProcessesIT and HealthIT");
    ImageFromDockerfile image = new ImageFromDockerfile("weightsync-it", true)
        .withFileFromPath(".", Launcher.root())
        .withDockerfilePath("docker/Dockerfile");
    try (GenericContainer<?> c = new GenericContainer<>(image)
        .withCreateContainerCmdModifier(cmd -> cmd.withEntrypoint("bash", "-c"))
        .withCommand("weightsync engine --port 30000 & exec weightsync serve --device cpu"
            + " --staging-dir /dev/shm/weightsync --sglang-url http://127.0.0.1:30000")
        .withExposedPorts(50051)
        .waitingFor(Wait.forHealthcheck().withStartupTimeout(Duration.ofMinutes(3)))) {
      c.start();
      try (WeightSyncClient client =
          WeightSyncClient.connect(c.getHost() + ":" + c.getMappedPort(50051))) {
        UpdateWeightsResponse r = client.pushFolder(Launcher.golden("bf16"), "1", 0, 1);
        assertThat(r.getEnginesList()).singleElement()
            .satisfies(e -> assertThat(e.getOutcome()).isEqualTo(EngineOutcome.LOADED));
      }
      ExecResult whoami = c.execInContainer("id", "-u");
      assertThat(whoami.getStdout().trim()).isEqualTo("10001");
      ExecResult stat = c.execInContainer("stat", "-c", "%a %u",
          "/dev/shm/weightsync/1/model-00001-of-00001.safetensors");
      assertThat(stat.getStdout().trim()).isEqualTo("644 10001"); // readable by the engine's user
    }
  }
}
