package dev.weightsync.server.quant;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;

class GpuUuidsTest {

  @Test
  void uuidsCompareWithoutTheirPrefixOrCase() {
    String u = "GPU-5e9ab2c1-0d3f-4c2a-9b8e-1f2e3d4c5b6a";
    assertThat(GpuUuids.same(u, u)).isTrue();
    assertThat(GpuUuids.same("5E9AB2C1-0D3F-4C2A-9B8E-1F2E3D4C5B6A", u)).isTrue();
    assertThat(GpuUuids.same(" gpu-5e9ab2c1-0d3f-4c2a-9b8e-1f2e3d4c5b6a", u)).isTrue();
    assertThat(GpuUuids.same("MIG-5e9ab2c1-0d3f-4c2a-9b8e-1f2e3d4c5b6a", u))
        .as("a MIG instance as nvidia-smi spells it, as the driver's bytes").isTrue();
    assertThat(GpuUuids.same("GPU-5e9ab2c1-0d3f-4c2a-9b8e-1f2e3d4c5b6b", u)).isFalse();
    assertThat(GpuUuids.same("", u)).isFalse();
    assertThat(GpuUuids.same("GPU-", "MIG-")).as("no digits name no device").isFalse();
    assertThat(GpuUuids.same(null, u)).isFalse();
  }
}
