package dev.weightsync.core.quant;

import dev.weightsync.core.tensor.DType;
import java.nio.ByteBuffer;

/**
 * Blockwise FP8 (docs/quantization.md): one band of up to 128 rows at a time, block by block. The
 * division is Java's {@code /} on floats, which is correctly rounded, as the spec requires.
 */
final class Fp8BlockKernel {
  private Fp8BlockKernel() {}

  static final int BLOCK = 128;
  private static final float UE8M0_FLOOR = 1e-4f;

  /** Scratch arrays of one thread. */
  static final class Scratch {
    final float[] block = new float[BLOCK * BLOCK];
    final short[] row = new short[BLOCK];
    final byte[] codes = new byte[BLOCK * BLOCK];
  }

  /**
   * Quantizes the band of {@code rows} rows (each {@code k} elements) in {@code src} into {@code
   * q} (rows x k codes) and {@code scales} (one per block column).
   *
   * @param firstElement index of the band's first element within the tensor, for error messages
   */
  static QuantError quantizeBand(String tensor, long firstElement, ByteBuffer src, DType dtype,
      int rows, int k, boolean ue8m0, byte[] q, float[] scales, Scratch scratch) {
    float floor = FloatReader.fp8AmaxFloor(dtype);
    float[] block = scratch.block;
    double maxAbs = 0;
    double sumErr = 0;
    double sumRef = 0;
    for (int c0 = 0, bj = 0; c0 < k; c0 += BLOCK, bj++) {
      int width = Math.min(BLOCK, k - c0);
      int n = rows * width;
      for (int r = 0; r < rows; r++) {
        FloatReader.read(src, dtype, r * k + c0, block, r * width, width, scratch.row);
      }
      int amaxBits = 0;
      for (int i = 0; i < n; i++) {
        amaxBits = Math.max(amaxBits, Float.floatToRawIntBits(block[i]) & 0x7FFFFFFF);
      }
      if (amaxBits >= 0x7F800000) {
        throw nonFinite(tensor, firstElement, block, rows, width, k, c0);
      }
      float amax = Math.max(Float.intBitsToFloat(amaxBits), floor);
      float s;
      float inv = 0;
      if (ue8m0) {
        s = ceilPowerOfTwo(Math.max(amax, UE8M0_FLOOR) / E4m3.MAX);
        inv = 1f / s; // exact: s is a power of two
      } else {
        s = amax / E4m3.MAX;
      }
      scales[bj] = s;
      byte[] codes = scratch.codes;
      for (int i = 0; i < n; i++) {
        float w = block[i];
        float v = ue8m0 ? w * inv : w / s;
        v = v > E4m3.MAX ? E4m3.MAX : (v < -E4m3.MAX ? -E4m3.MAX : v);
        int code = E4m3.encode(v);
        codes[i] = (byte) code;
        float err = Math.abs(E4m3.decode(code) * s - w);
        maxAbs = Math.max(maxAbs, err);
        sumErr += (double) err * err;
        sumRef += (double) w * w;
      }
      for (int r = 0; r < rows; r++) {
        System.arraycopy(codes, r * width, q, r * k + c0, width);
      }
    }
    return new QuantError(maxAbs, sumErr, sumRef, (long) rows * k);
  }

  /** The smallest power of two >= {@code v} (v positive, normal). */
  static float ceilPowerOfTwo(float v) {
    int bits = Float.floatToRawIntBits(v);
    if ((bits & 0x007FFFFF) == 0) {
      return v;
    }
    return Float.intBitsToFloat((bits & 0x7F800000) + 0x00800000);
  }

  private static NonFiniteWeightException nonFinite(String tensor, long firstElement,
      float[] block, int rows, int width, int k, int c0) {
    for (int r = 0; r < rows; r++) {
      for (int c = 0; c < width; c++) {
        float v = block[r * width + c];
        if (!Float.isFinite(v)) {
          return new NonFiniteWeightException(tensor, firstElement + (long) r * k + c0 + c, v);
        }
      }
    }
    throw new IllegalStateException("no non-finite value found");
  }
}
