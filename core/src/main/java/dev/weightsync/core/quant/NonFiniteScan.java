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
        if (!mayHoldAllOnes(b, 2 * n, BF16_EXPONENTS, LANES_16, TOPS_16)) {
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
        if (!mayHoldAllOnes(b, 2 * n, F16_EXPONENTS, LANES_16, TOPS_16)) {
          return;
        }
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
        if (!mayHoldAllOnes(b, n, E4M3_NANS, LANES_8, TOPS_8)) {
          return;
        }
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

  /** Exponent bits of four BF16 values in a long: all ones is infinity or NaN. */
  private static final long BF16_EXPONENTS = 0x7F807F807F807F80L;
  /** Exponent bits of four F16 values. */
  private static final long F16_EXPONENTS = 0x7C007C007C007C00L;
  /** Exponent and mantissa bits of eight e4m3fn values: all ones is its only NaN (no infinity). */
  private static final long E4M3_NANS = 0x7F7F7F7F7F7F7F7FL;
  private static final long LANES_16 = 0x0001000100010001L;
  private static final long TOPS_16 = 0x8000800080008000L;
  private static final long LANES_8 = 0x0101010101010101L;
  private static final long TOPS_8 = 0x8080808080808080L;

  /**
   * False when no element in the first {@code bytes} bytes has all the bits of its lane in
   * {@code mask} set, a long (four 16-bit or eight 8-bit elements) at a time: an embedding passed
   * through, or a relayed FP8 part, is billions of elements. True sends the caller to the
   * element-by-element loop, which finds the element. Per lane, {@code (v & mask) ^ mask} is zero
   * exactly for a hit, and its top bit is never set (no mask has it), so the classic zero-lane
   * test {@code (y - lanes) & ~y & tops} has no false positives.
   */
  private static boolean mayHoldAllOnes(ByteBuffer b, int bytes, long mask, long lanes,
      long tops) {
    int base = b.position();
    int words = bytes / 8;
    for (int w = 0; w < words; w++) {
      long y = (b.getLong(base + 8 * w) & mask) ^ mask;
      if (((y - lanes) & ~y & tops) != 0) {
        return true;
      }
    }
    long tail = 0; // the last elements, the lanes past them zero (never a hit)
    for (int i = 8 * words; i < bytes; i++) {
      tail |= (b.get(base + i) & 0xFFL) << (8 * (i - 8 * words));
    }
    long y = (tail & mask) ^ mask;
    return ((y - lanes) & ~y & tops) != 0;
  }
}
