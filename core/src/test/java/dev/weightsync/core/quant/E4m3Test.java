package dev.weightsync.core.quant;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;

class E4m3Test {

  @Test
  void everyFiniteCodeDecodesAndReencodesToItself() {
    int finite = 0;
    for (int code = 0; code < 256; code++) {
      float v = E4m3.decode(code);
      if ((code & 0x7F) == 0x7F) {
        assertThat(v).as("code 0x%02X", code).isNaN();
        continue;
      }
      finite++;
      assertThat(E4m3.encode(v)).as("code 0x%02X (%s)", code, v).isEqualTo(code);
    }
    assertThat(finite).isEqualTo(254);
  }

  @Test
  void largestAndSmallestValues() {
    assertThat(E4m3.decode(0x7E)).isEqualTo(448f);
    assertThat(E4m3.decode(0x01)).isEqualTo(0x1p-9f);
    assertThat(E4m3.decode(0x08)).isEqualTo(0x1p-6f);
    assertThat(E4m3.encode(448f)).isEqualTo(0x7E);
    assertThat(E4m3.encode(-448f)).isEqualTo(0xFE);
  }

  @Test
  void halfwayValuesRoundToTheEvenCode() {
    for (int sign : new int[] {0, 0x80}) {
      for (int code = 0; code < 0x7E; code++) {
        float lo = E4m3.decode(sign | code);
        float hi = E4m3.decode(sign | (code + 1));
        float mid = (lo + hi) / 2; // exact in f32
        int expected = sign | ((code & 1) == 0 ? code : code + 1);
        assertThat(E4m3.encode(mid)).as("halfway %s..%s", lo, hi).isEqualTo(expected);
        // just off the midpoint rounds to the nearer code
        assertThat(E4m3.encode(Math.nextDown(Math.abs(mid)) * (sign == 0 ? 1 : -1)))
            .isEqualTo(sign | code);
        assertThat(E4m3.encode(Math.nextUp(Math.abs(mid)) * (sign == 0 ? 1 : -1)))
            .isEqualTo(sign | (code + 1));
      }
    }
  }

  @Test
  void negativeValuesThatRoundToZeroKeepTheirSign() {
    assertThat(E4m3.encode(-0.0f)).isEqualTo(0x80);
    assertThat(E4m3.encode(-0x1p-11f)).isEqualTo(0x80);
    assertThat(E4m3.encode(-Float.MIN_VALUE)).isEqualTo(0x80);
    assertThat(E4m3.encode(0x1p-11f)).isEqualTo(0x00);
  }
}
