package dev.weightsync.server.quant.cuda;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;

class CudaUuidTest {

  @Test
  void uuidsAreSpelledAsCudaAndNvidiaSmiSpellThem() {
    byte[] b = new byte[16];
    for (int i = 0; i < 16; i++) {
      b[i] = (byte) (0xF0 + i);
    }
    assertThat(CudaContext.formatUuid(b)).isEqualTo("GPU-f0f1f2f3-f4f5-f6f7-f8f9-fafbfcfdfeff");
  }
}
