package dev.weightsync.core.quant;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.weightsync.core.tensor.DType;
import dev.weightsync.core.tensor.TensorSpec;
import org.junit.jupiter.api.Test;

class OutputLayoutTest {

  private static final TensorSpec W = TensorSpec.of("m.weight", DType.BF16, 512, 300);

  @Test
  void fp8BandsStartAtTheirRowAndTheirBlockRowOfScales() {
    TensorPlan p = new TensorPlan.Fp8Block(W, false);
    // 300 columns: 3 blocks across, so a block row of scales is 12 bytes
    assertThat(OutputLayout.offsetsAtRow(p, 256)).containsExactly(256L * 300, 2L * 3 * 4);
    assertThatThrownBy(() -> OutputLayout.offsetsAtRow(p, 100))
        .hasMessageContaining("does not start a 128-row block");
  }

  @Test
  void int4BandsStartAtTheirRowAndTheShapeIsWrittenOncePerTensor() throws Exception {
    TensorSpec w = TensorSpec.of("m.weight", DType.BF16, 10, 256);
    TensorPlan p = new TensorPlan.Int4Group(w, 32);
    assertThat(OutputLayout.offsetsAtRow(p, 3)).containsExactly(3L * 256 / 2, 3L * 8 * 2, -1L);
    java.util.Map<String, java.nio.ByteBuffer> written = new java.util.HashMap<>();
    java.util.concurrent.atomic.AtomicLong at = new java.util.concurrent.atomic.AtomicLong(-1);
    OutputLayout.writeWholeTensorOutputs(p, (name, offset, data) -> {
      written.put(name, data);
      at.set(offset);
    });
    assertThat(written).containsOnlyKeys("m.weight_shape");
    assertThat(at.get()).isZero();
    assertThat(written.get("m.weight_shape").order(java.nio.ByteOrder.LITTLE_ENDIAN).getInt(4))
        .isEqualTo(256);
  }

  @Test
  void aCopiedTensorHasNoBands() {
    assertThatThrownBy(() -> OutputLayout.offsetsAtRow(new TensorPlan.PassThrough(W, false), 0))
        .hasMessageContaining("copied whole");
  }
}
