package dev.weightsync.server.ingest;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;

class PartReceiverTest {

  @Test
  void callerTextIsClippedAndEscapedForLogs() {
    assertThat(Refusals.printable("step-1")).isEqualTo("step-1");
    assertThat(Refusals.printable("a\nINFO forged line")).isEqualTo("a\\x0aINFO forged line");
    assertThat(Refusals.printable("x".repeat(1024))).as("a legal name, whole")
        .isEqualTo("x".repeat(1024));
    assertThat(Refusals.printable("x".repeat(1 << 20))).isEqualTo("x".repeat(1025) + "...");
    assertThat(Refusals.printable("\n".repeat(1 << 20))).hasSizeLessThan(1024 + 8);
  }

  @Test
  void gpuUuidsCompareWithoutTheirPrefixOrCase() {
    String u = "GPU-5e9ab2c1-0d3f-4c2a-9b8e-1f2e3d4c5b6a";
    assertThat(BucketIntake.sameGpu(u, u)).isTrue();
    assertThat(BucketIntake.sameGpu("5E9AB2C1-0D3F-4C2A-9B8E-1F2E3D4C5B6A", u)).isTrue();
    assertThat(BucketIntake.sameGpu(" gpu-5e9ab2c1-0d3f-4c2a-9b8e-1f2e3d4c5b6a", u)).isTrue();
    assertThat(BucketIntake.sameGpu("GPU-5e9ab2c1-0d3f-4c2a-9b8e-1f2e3d4c5b6b", u)).isFalse();
    assertThat(BucketIntake.sameGpu("", u)).isFalse();
  }
}
