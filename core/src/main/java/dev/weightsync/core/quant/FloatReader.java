package dev.weightsync.core.quant;

import dev.weightsync.core.tensor.DType;
import java.nio.ByteBuffer;

/** Widens BF16, F16 or F32 elements of a little-endian buffer to f32 (exactly). */
final class FloatReader {
  private FloatReader() {}

  /**
   * Reads {@code count} elements starting at element {@code index} of {@code src} into {@code dst}
   * at {@code off}. {@code scratch} must hold {@code count} shorts for 16-bit dtypes.
   */
  static void read(ByteBuffer src, DType dtype, int index, float[] dst, int off, int count,
      short[] scratch) {
    switch (dtype) {
      case BF16 -> {
        src.asShortBuffer().get(index, scratch, 0, count);
        for (int i = 0; i < count; i++) {
          dst[off + i] = Float.intBitsToFloat(scratch[i] << 16);
        }
      }
      case F16 -> {
        src.asShortBuffer().get(index, scratch, 0, count);
        for (int i = 0; i < count; i++) {
          dst[off + i] = Bf16.halfToFloat(scratch[i]);
        }
      }
      case F32 -> src.asFloatBuffer().get(index, dst, off, count);
      default -> throw new IllegalArgumentException("cannot quantize dtype " + dtype);
    }
  }

  /** The spec's amax floor for FP8: bf16(1e-12) for BF16 input, f32(1e-12) otherwise. */
  static float fp8AmaxFloor(DType dtype) {
    return dtype == DType.BF16 ? Bf16.toFloat(Bf16.fromFloat(1e-12f)) : 1e-12f;
  }
}
