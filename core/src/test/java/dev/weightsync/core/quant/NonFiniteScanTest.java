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

  @Test
  void everyE4m3AndF16PositionIsCheckedALongAtATimeAndTheTail() {
    int n = 43; // five longs of eight e4m3 values and a tail of three
    for (byte bad : new byte[] {0x7F, (byte) 0xFF}) {
      for (int at = 0; at < n; at++) {
        ByteBuffer b = ByteBuffer.allocate(n);
        for (int i = 0; i < n; i++) {
          b.put(i, (byte) (0x7E - (i % 5) | (i % 2 == 0 ? 0x80 : 0))); // 448 and near: finite
        }
        b.put(at, bad);
        int index = at;
        assertThatThrownBy(() -> NonFiniteScan.check("t", DType.F8_E4M3, b, 7))
            .isInstanceOfSatisfying(NonFiniteWeightException.class,
                e -> org.assertj.core.api.Assertions.assertThat(e.elementIndex())
                    .isEqualTo(7 + index));
      }
    }
    ByteBuffer finite = ByteBuffer.allocate(n);
    for (int i = 0; i < n; i++) {
      finite.put(i, (byte) (i % 2 == 0 ? 0x7E : 0xFE));
    }
    assertThatCode(() -> NonFiniteScan.check("t", DType.F8_E4M3, finite, 0))
        .doesNotThrowAnyException();

    int m = 21; // five longs of four F16 values and a tail of one
    for (short bad : new short[] {0x7C00, (short) 0xFC00, 0x7E00}) {
      for (int at = 0; at < m; at++) {
        ByteBuffer b = ByteBuffer.allocate(2 * m).order(ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < m; i++) {
          b.putShort(2 * i, (short) (0x7BFF - i)); // the largest finite halves
        }
        b.putShort(2 * at, bad);
        int index = at;
        assertThatThrownBy(() -> NonFiniteScan.check("t", DType.F16, b, 0))
            .isInstanceOfSatisfying(NonFiniteWeightException.class,
                e -> org.assertj.core.api.Assertions.assertThat(e.elementIndex())
                    .isEqualTo(index));
      }
    }
  }

  /** Pieces cut anywhere, inside elements too, as HTTP/2 frames cut a chunk. */
  @Test
  void piecesCutInsideElementsAreScannedAsOneRun() {
    java.util.SplittableRandom r = new java.util.SplittableRandom(11);
    for (DType dtype : new DType[] {DType.BF16, DType.F16, DType.F32, DType.F64}) {
      int esize = dtype.byteSize();
      int n = 3000;
      for (int trial = 0; trial < 40; trial++) {
        int at = r.nextInt(n);
        ByteBuffer b = ByteBuffer.allocate(esize * n).order(ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < n; i++) {
          switch (dtype) {
            case BF16 -> b.putShort(Bf16.fromFloat(i == at ? Float.POSITIVE_INFINITY : 1.5f));
            case F16 -> b.putShort(i == at ? (short) 0x7C00 : (short) 0x3C00);
            case F32 -> b.putFloat(i == at ? Float.NaN : 1.5f);
            default -> b.putDouble(i == at ? Double.NaN : 1.5);
          }
        }
        java.util.List<ByteBuffer> pieces = new java.util.ArrayList<>();
        for (int off = 0; off < b.capacity(); ) {
          int len = Math.min(b.capacity() - off, 1 + r.nextInt(trial % 2 == 0 ? 5 : 700));
          pieces.add(b.slice(off, len));
          off += len;
        }
        int index = at;
        assertThatThrownBy(() -> NonFiniteScan.check("t", dtype, pieces, 7))
            .as(dtype + " at " + at)
            .isInstanceOfSatisfying(NonFiniteWeightException.class,
                e -> org.assertj.core.api.Assertions.assertThat(e.elementIndex())
                    .isEqualTo(7 + index));
      }
    }
    ByteBuffer ok = ByteBuffer.allocate(10);
    assertThatCode(() -> NonFiniteScan.check("t", DType.BF16,
        java.util.List.of(ok.slice(0, 3), ok.slice(3, 7)), 0)).doesNotThrowAnyException();
    assertThatThrownBy(() -> NonFiniteScan.check("t", DType.BF16, java.util.List.of(ok.slice(0, 3)), 0))
        .hasMessageContaining("left over");
  }
}
