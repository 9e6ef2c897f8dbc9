package dev.weightsync.it;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.weightsync.core.checkpoint.CheckpointWriter;
import dev.weightsync.core.quant.Bf16;
import dev.weightsync.core.tensor.DType;
import dev.weightsync.core.tensor.TensorSpec;
import java.net.ServerSocket;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A model ten times larger than the sidecar's heap and direct-memory limits goes through: the
 * sidecar runs as its own process under -Xmx64m and -XX:MaxDirectMemorySize=64m and is pushed
 * 640 MB of BF16. Buffering the model (or even one tensor) on the heap would fail with
 * OutOfMemoryError.
 */
class BoundedMemoryIT {

  @TempDir Path tmp;

  @Test
  void aModelTenTimesTheBuffersGoesThroughABoundedSidecar() throws Exception {
    Path model = Files.createDirectories(tmp.resolve("model"));
    List<TensorSpec> tensors = new ArrayList<>();
    for (int i = 0; i < 10; i++) {
      tensors.add(TensorSpec.of("model.layers." + i + ".mlp.up_proj.weight", DType.BF16, 8192, 4096));
    }
    ByteBuffer rows = ByteBuffer.allocate(4096 * 2 * 64).order(ByteOrder.LITTLE_ENDIAN);
    for (int i = 0; rows.hasRemaining(); i++) {
      rows.putShort(Bf16.fromFloat(((i * 7919) % 251 - 125) * 1e-3f));
    }
    try (CheckpointWriter w = new CheckpointWriter(model, tensors, 1L << 30)) {
      for (TensorSpec t : tensors) {
        for (long off = 0; off < t.byteLength(); off += rows.capacity()) {
          w.write(t.name(), off, rows.duplicate().clear());
        }
      }
      w.finish(new ObjectMapper().createObjectNode(), false);
    }

    int grpcPort;
    try (ServerSocket s = new ServerSocket(0)) {
      grpcPort = s.getLocalPort();
    }
    Path log = tmp.resolve("serve.log");
    ProcessBuilder pb = new ProcessBuilder(Launcher.root().resolve("bin/weightsync").toString(),
        "serve", "--port", String.valueOf(grpcPort), "--metrics-port", "-1",
        "--format", "fp8-block", "--staging-dir", tmp.resolve("staging").toString(),
        "--threads", "2").redirectErrorStream(true).redirectOutput(log.toFile());
    pb.environment().put("WEIGHTSYNC_JAVA_OPTS", "-Xmx64m -XX:MaxDirectMemorySize=64m");
    Process serve = Launcher.start(pb);
    try {
      Launcher.awaitPort(grpcPort, serve, log);
      Launcher.Result push = Launcher.weightsync("push", "--target", "127.0.0.1:" + grpcPort,
          "--model-dir", model.toString(), "--version", "big");
      assertThat(push.exitCode()).as(push.stderr() + Files.readString(log)).isZero();
      assertThat(push.stdout()).contains("10 tensors in (671.1 MB)");
      long rssKb = Files.readAllLines(Path.of("/proc/" + serve.pid() + "/status")).stream()
          .filter(l -> l.startsWith("VmHWM:")).map(l -> l.replaceAll("\\D", ""))
          .mapToLong(Long::parseLong).findFirst().orElse(-1);
      System.out.println("bounded sidecar: peak resident memory " + rssKb / 1024 + " MiB for a"
          + " 671 MB model under -Xmx64m -XX:MaxDirectMemorySize=64m");
      assertThat(Files.readString(log)).doesNotContain("OutOfMemoryError");
    } finally {
      serve.destroy();
      serve.waitFor();
    }
  }
}
