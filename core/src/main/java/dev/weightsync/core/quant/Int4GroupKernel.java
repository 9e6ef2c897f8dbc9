package dev.weightsync.core.quant;

import dev.weightsync.core.tensor.DType;
import java.nio.ByteBuffer;

/** Symmetric grouped INT4 (docs/quantization.md), quantized and nibble-packed row by row. */
final class Int4GroupKernel {
  private Int4GroupKernel() {}

  /** f32(1/7) = 0x3E124925, as the reference CUDA kernel multiplies by it. */
  static final float ONE_SEVENTH = Float.intBitsToFloat(0x3E124925);
  static final float SCALE_FLOOR = 1e-5f;

  /** Scratch arrays of one thread, for rows of up to {@code k} elements. */
  static final class Scratch {
    final float[] row;
    final short[] raw;

    Scratch(int k) {
      row = new float[k];
      raw = new short[k];
    }
  }

  /**
   * Quantizes {@code rows} rows of {@code k} elements into {@code packed} (k/8 ints a row) and
   * {@code scales} (k/g BF16 values a row).
   */
  static QuantError quantizeRows(String tensor, long firstElement, ByteBuffer src, DType dtype,
      int rows, int k, int g, int[] packed, short[] scales, Scratch scratch) {
    float[] row = scratch.row;
    double maxAbs = 0;
    double sumErr = 0;
    double sumRef = 0;
    int groups = k / g;
    for (int r = 0; r < rows; r++) {
      FloatReader.read(src, dtype, r * k, row, 0, k, scratch.raw);
      for (int gi = 0; gi < groups; gi++) {
        int c0 = gi * g;
        int amaxBits = 0;
        for (int c = c0; c < c0 + g; c++) {
          amaxBits = Math.max(amaxBits, Float.floatToRawIntBits(row[c]) & 0x7FFFFFFF);
        }
        if (amaxBits >= 0x7F800000) {
          for (int c = c0; c < c0 + g; c++) {
            if (!Float.isFinite(row[c])) {
              throw new NonFiniteWeightException(tensor, firstElement + (long) r * k + c, row[c]);
            }
          }
        }
        float s = Math.max(Float.intBitsToFloat(amaxBits) * ONE_SEVENTH, SCALE_FLOOR);
        short sBf16 = Bf16.fromFloat(s);
        float sDeq = Bf16.toFloat(sBf16);
        scales[r * groups + gi] = sBf16;
        for (int c = c0; c < c0 + g; c += 8) {
          int word = 0;
          for (int j = 0; j < 8; j++) {
            float w = row[c + j];
            int qv = (int) Math.rint(w / s);
            qv = qv > 7 ? 7 : (qv < -7 ? -7 : qv);
            word |= (qv + 8) << (4 * j);
            float err = Math.abs(qv * sDeq - w);
            maxAbs = Math.max(maxAbs, err);
            sumErr += (double) err * err;
            sumRef += (double) w * w;
          }
          packed[(r * k + c) >>> 3] = word;
        }
      }
    }
    return new QuantError(maxAbs, sumErr, sumRef, (long) rows * k);
  }
}
