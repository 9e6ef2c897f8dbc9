package dev.weightsync.core.quant;

import static org.assertj.core.api.Assertions.assertThatCode;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.weightsync.core.tensor.DType;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import org.junit.jupiter.api.Test;

class NonFiniteScanTest {

  @Test
  void everyBf16PositionIsCheckedFourAtATimeAndTheTail() {
    int n = 37; // nine words of four and a tail of one
    for (short bad : new short[] {(short) 0x7FC0, (short) 0x7F80, (short) 0xFF80, (short) 0xFFFF}) {
      for (int at = 0; at < n; at++) {
        ByteBuffer b = ByteBuffer.allocate(2 * n).order(ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < n; i++) {
          b.putShort(2 * i, Bf16.fromFloat((i % 7 - 3) * 1e30f)); // large but finite
        }
        b.putShort(2 * at, bad);
        int index = at;
        assertThatThrownBy(() -> NonFiniteScan.check("t", DType.BF16, b, 100))
            .isInstanceOfSatisfying(NonFiniteWeightException.class,
                e -> org.assertj.core.api.Assertions.assertThat(e.elementIndex())
                    .isEqualTo(100 + index));
      }
    }
    ByteBuffer finite = ByteBuffer.allocate(2 * n).order(ByteOrder.LITTLE_ENDIAN);
    for (int i = 0; i < n; i++) {
      finite.putShort(2 * i, (short) (0x7F7F - i)); // the largest finite values
    }
    assertThatCode(() -> NonFiniteScan.check("t", DType.BF16, finite, 0)).doesNotThrowAnyException();
  }
}
