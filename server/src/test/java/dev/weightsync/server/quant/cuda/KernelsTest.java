package dev.weightsync.server.quant.cuda;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.weightsync.core.checkpoint.CheckpointComparison;
import dev.weightsync.core.checkpoint.CheckpointConverter;
import dev.weightsync.core.quant.QuantScheme;
import dev.weightsync.core.quant.Format;
import dev.weightsync.server.quant.Quantizers;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.security.MessageDigest;
import java.util.HexFormat;
import org.junit.jupiter.api.Test;

class KernelsTest {

  @Test
  void theCommittedPtxWasBuiltFromTheCommittedSource() throws Exception {
    // the hash covers the nvcc flags and the source (build-ptx.sh: cat nvcc-flags quantize.cu)
    MessageDigest sha = MessageDigest.getInstance("SHA-256");
    sha.update(Files.readAllBytes(Path.of("src/main/cuda/nvcc-flags")));
    sha.update(Files.readAllBytes(Path.of("src/main/cuda/quantize.cu")));
    String hash = HexFormat.of().formatHex(sha.digest());
    String ptx = new String(CudaContext.ptx(), StandardCharsets.UTF_8);
    assertThat(ptx.lines().findFirst().orElse(""))
        .as("kernels/quantize.ptx is stale: run server/src/main/cuda/build-ptx.sh (needs nvcc)")
        .isEqualTo("// weightsync-source-sha256: " + hash);
    assertThat(ptx).contains(".entry fp8_block").contains(".entry int4_group");
  }

  @Test
  void autoFallsBackToTheCpuWithAReasonWhereThereIsNoGpu() {
    Quantizers.Choice c = Quantizers.create("auto", 1);
    try {
      if (c.quantizer().device().startsWith("cuda")) {
        assertThat(c.note()).isEmpty(); // on a GPU machine: nothing to fall back from
      } else {
        assertThat(c.quantizer().device()).isEqualTo("cpu");
        assertThat(c.note()).contains("no usable GPU").doesNotContain("\n");
      }
    } finally {
      c.quantizer().close();
    }
  }

  @Test
  void theGpuPathReproducesTheGoldenFolders() throws Exception {
    Quantizers.Choice c = Quantizers.create("auto", 2);
    try {
      boolean gpu = c.quantizer().device().startsWith("cuda");
      String why = "no CUDA GPU here (" + c.note() + "); the GPU path is verified on the GPU"
          + " machine (tools/gpu/run-on-gpu-machine.sh runs this test there with"
          + " -Dweightsync.requireTools=gpu); the CPU path it must equal is covered by the golden tests";
      if (!gpu && System.getProperty("weightsync.requireTools", "").contains("gpu")) {
        throw new AssertionError("-Dweightsync.requireTools names gpu, but " + why);
      }
      assumeTrue(gpu, "skipped: " + why);
      List<Path> roots = new ArrayList<>(List.of(
          Path.of(System.getProperty("weightsync.fixtures", "../testdata/golden"))));
      Path shared = Path.of(System.getProperty("weightsync.sharedGolden", "../../shared/golden"));
      if (Files.isDirectory(shared.resolve("bf16"))) {
        roots.add(shared);
      }
      for (Path golden : roots) {
        for (String[] g : new String[][] {{"fp8", "fp8-block"}, {"int4_g32", "int4-group"}}) {
          Path out = Files.createTempDirectory("gpu-golden");
          Files.delete(out);
          new CheckpointConverter(c.quantizer(),
              QuantScheme.of(Format.parse(g[1]), g[0].equals("int4_g32") ? 32 : null), 1L << 30)
              .convert(golden.resolve("bf16"), out, false, null);
          assertThat(CheckpointComparison.compare(golden.resolve(g[0]), out).differences())
              .as(golden + "/" + g[0]).isEmpty();
        }
      }
    } finally {
      c.quantizer().close();
    }
  }
}
