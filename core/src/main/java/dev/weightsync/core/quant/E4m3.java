package dev.weightsync.core.quant;

/**
 * The FP8 e4m3fn encoding: 1 sign, 4 exponent (bias 7), 3 mantissa bits; no infinities; NaN only
 * at 0x7F/0xFF; largest finite 448 (0x7E); subnormals m * 2^-9.
 */
public final class E4m3 {
  private E4m3() {}

  public static final float MAX = 448f;

  private static final float[] DECODE = new float[256];

  static {
    for (int code = 0; code < 256; code++) {
      int exp = (code >>> 3) & 0xF;
      int mant = code & 0x7;
      float v;
      if ((code & 0x7F) == 0x7F) {
        v = Float.NaN;
      } else if (exp == 0) {
        v = mant * 0x1p-9f;
      } else {
        v = (1f + mant / 8f) * (float) Math.scalb(1.0, exp - 7);
      }
      DECODE[code] = (code & 0x80) != 0 ? -v : v;
    }
  }

  /** The value of an e4m3fn code (NaN for 0x7F and 0xFF). */
  public static float decode(int code) {
    return DECODE[code & 0xFF];
  }

  /**
   * The nearest e4m3fn code to {@code v}, ties to even mantissa, sign always kept. {@code v} must
   * be finite with {@code |v| <= 448} (the callers clamp first).
   */
  public static int encode(float v) {
    int bits = Float.floatToRawIntBits(v);
    int sign = (bits >>> 24) & 0x80;
    int abs = bits & 0x7FFFFFFF;
    if (abs >= 0x3C800000) { // >= 2^-6, the smallest normal e4m3 value
      // Round the 23-bit mantissa to 3 bits, ties to even; a carry moves into the exponent.
      int rounded = abs + 0x7FFFF + ((abs >>> 20) & 1);
      return sign | ((rounded >>> 20) - (120 << 3)); // rebias the exponent from 127 to 7
    }
    // Subnormal: multiples of 2^-9. The scaling by 512 is exact; rint rounds ties to even.
    return sign | (int) Math.rint(Float.intBitsToFloat(abs) * 512f);
  }
}
