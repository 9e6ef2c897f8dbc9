package dev.weightsync.core.quant;

import dev.weightsync.core.tensor.DType;
import java.nio.ByteBuffer;

/** Finds NaN and infinity in floating-point tensors that are passed through unquantized. */
public final class NonFiniteScan {
  private NonFiniteScan() {}

  /**
   * Throws when {@code window} (little-endian elements of {@code dtype}, the first being element
   * {@code firstElement} of the tensor) holds a non-finite value. Integer dtypes always pass.
   */
  public static void check(String tensor, DType dtype, ByteBuffer window, long firstElement) {
    ByteBuffer b = window.duplicate().order(java.nio.ByteOrder.LITTLE_ENDIAN);
    int n = b.remaining() / dtype.byteSize();
    switch (dtype) {
      case BF16 -> {
        if (!mayHoldNonFiniteBf16(b, n)) {
          return;
        }
        for (int i = 0; i < n; i++) {
          short v = b.getShort(b.position() + 2 * i);
          if ((v & 0x7F80) == 0x7F80) {
            throw new NonFiniteWeightException(tensor, firstElement + i, Bf16.toFloat(v));
          }
        }
      }
      case F16 -> {
        for (int i = 0; i < n; i++) {
          short v = b.getShort(b.position() + 2 * i);
          if ((v & 0x7C00) == 0x7C00) {
            throw new NonFiniteWeightException(tensor, firstElement + i, Bf16.halfToFloat(v));
          }
        }
      }
      case F32 -> {
        for (int i = 0; i < n; i++) {
          float v = b.getFloat(b.position() + 4 * i);
          if (!Float.isFinite(v)) {
            throw new NonFiniteWeightException(tensor, firstElement + i, v);
          }
        }
      }
      case F64 -> {
        for (int i = 0; i < n; i++) {
          double v = b.getDouble(b.position() + 8 * i);
          if (!Double.isFinite(v)) {
            throw new NonFiniteWeightException(tensor, firstElement + i, (float) v);
          }
        }
      }
      case F8_E4M3 -> {
        for (int i = 0; i < n; i++) {
          if ((b.get(b.position() + i) & 0x7F) == 0x7F) {
            throw new NonFiniteWeightException(tensor, firstElement + i, Float.NaN);
          }
        }
      }
      default -> { }
    }
  }

  /**
   * As {@link #check(String, DType, ByteBuffer, long)} over bytes that lie in several buffers in
   * order (a chunk as the transport received it, in pieces cut anywhere, even inside an element);
   * together they must hold whole elements.
   */
  public static void check(String tensor, DType dtype, java.util.List<ByteBuffer> pieces,
      long firstElement) {
    int esize = dtype.byteSize();
    ByteBuffer straddling = ByteBuffer.allocate(esize); // an element cut between two pieces
    long element = firstElement;
    for (ByteBuffer piece : pieces) {
      ByteBuffer p = piece.duplicate();
      if (straddling.position() > 0) {
        while (straddling.hasRemaining() && p.hasRemaining()) {
          straddling.put(p.get());
        }
        if (straddling.hasRemaining()) {
          continue;
        }
        check(tensor, dtype, straddling.flip(), element++);
        straddling.clear();
      }
      int whole = p.remaining() - p.remaining() % esize;
      check(tensor, dtype, p.slice(p.position(), whole), element);
      element += whole / esize;
      p.position(p.position() + whole);
      straddling.put(p);
    }
    if (straddling.position() > 0) {
      throw new IllegalArgumentException("tensor " + tensor + ": " + straddling.position()
          + " bytes of a " + dtype + " element left over");
    }
  }

  /** Exponent bits of four BF16 values in a long. */
  private static final long EXPONENTS = 0x7F807F807F807F80L;

  /**
   * False when no BF16 value in the buffer has an all-ones exponent, four values at a time (an
   * embedding passed through is hundreds of millions of them); true sends the caller to the
   * element-by-element loop, which finds the element.
   */
  private static boolean mayHoldNonFiniteBf16(ByteBuffer b, int n) {
    int base = b.position();
    int words = n / 4;
    for (int w = 0; w < words; w++) {
      long y = (b.getLong(base + 8 * w) & EXPONENTS) ^ EXPONENTS; // a zero lane: non-finite
      if (((y - 0x0001000100010001L) & ~y & 0x8000800080008000L) != 0) {
        return true;
      }
    }
    for (int i = 4 * words; i < n; i++) {
      if ((b.getShort(base + 2 * i) & 0x7F80) == 0x7F80) {
        return true;
      }
    }
    return false;
  }
}
