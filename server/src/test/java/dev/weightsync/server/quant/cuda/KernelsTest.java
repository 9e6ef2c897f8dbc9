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
  void theCommittedPtxWasBuiltFromTheCommittedSources() throws Exception {
    // the hash covers what build-ptx.sh hashes, in its order
    MessageDigest sha = MessageDigest.getInstance("SHA-256");
    for (String f : List.of("nvcc-flags", "ptx-archs", "quant_math.cuh", "quantize.cu", "proofs.cu")) {
      sha.update(Files.readAllBytes(Path.of("src/main/cuda", f)));
    }
    String hash = HexFormat.of().formatHex(sha.digest());
    List<String> archs = List.of(Files.readString(Path.of("src/main/cuda/ptx-archs")).trim().split(" "));
    assertThat(archs).contains("80", "89", "90");
    for (String arch : archs) {
      String kernels = new String(CudaContext.ptx("quantize", "compute_" + arch), StandardCharsets.UTF_8);
      String proofs = new String(CudaContext.ptx("proofs", "compute_" + arch), StandardCharsets.UTF_8);
      for (String ptx : List.of(kernels, proofs)) {
        assertThat(ptx.lines().findFirst().orElse(""))
            .as("the PTX for compute_" + arch + " is stale: run server/src/main/cuda/build-ptx.sh (needs nvcc)")
            .isEqualTo("// weightsync-source-sha256: " + hash);
      }
      assertThat(kernels).contains(".entry fp8_block").contains(".entry int4_group");
      assertThat(proofs).contains(".entry prove_fp8").contains(".entry prove_int4");
      // the hardware e4m3 conversions exist from compute_89 on; compute_80 encodes in software
      assertThat(kernels.contains("cvt.rn.satfinite.e4m3x2.f32")).as("compute_" + arch)
          .isEqualTo(!arch.equals("80"));
    }
  }

  @Test
  void int4GoesToTheKernelForGroupsOf16To256ElementsThatTileTheRow() {
    for (int g : new int[] {16, 32, 64, 128, 256}) {
      assertThat(Kernels.take(int4(512, g))).as("G = " + g).isTrue();
    }
    for (int g : new int[] {8, 24, 48, 512}) {
      assertThat(Kernels.take(int4(1536, g))).as("G = " + g + " goes to the CPU").isFalse();
    }
    assertThat(Kernels.take(int4(520, 128))).as("a row of 520 is not whole groups of 128")
        .isFalse();
  }

  private static dev.weightsync.core.quant.TensorPlan int4(long cols, int g) {
    return new dev.weightsync.core.quant.TensorPlan.Int4Group(dev.weightsync.core.tensor.TensorSpec
        .of("w", dev.weightsync.core.tensor.DType.BF16, 4, cols), g);
  }

  @Test
  void eachComputeCapabilityGetsThePtxBuiltForIt() {
    assertThat(CudaContext.ptxArch(8, 0)).isEqualTo("compute_80"); // A100
    assertThat(CudaContext.ptxArch(8, 6)).isEqualTo("compute_80"); // A10, RTX 30
    assertThat(CudaContext.ptxArch(8, 9)).isEqualTo("compute_89"); // L4, L40S
    assertThat(CudaContext.ptxArch(9, 0)).isEqualTo("compute_90"); // H100, H200
    assertThat(CudaContext.ptxArch(10, 0)).isEqualTo("compute_90"); // B200: JIT from compute_90
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
