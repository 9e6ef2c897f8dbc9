package dev.weightsync.core.tensor;

import java.util.Locale;

/** Element types, named as the safetensors format names them. */
public enum DType {
  BOOL(1, false),
  U8(1, false),
  I8(1, false),
  I16(2, false),
  I32(4, false),
  I64(8, false),
  F8_E4M3(1, true),
  F16(2, true),
  BF16(2, true),
  F32(4, true),
  F64(8, true);

  private final int byteSize;
  private final boolean floatingPoint;

  DType(int byteSize, boolean floatingPoint) {
    this.byteSize = byteSize;
    this.floatingPoint = floatingPoint;
  }

  public int byteSize() {
    return byteSize;
  }

  public boolean isFloatingPoint() {
    return floatingPoint;
  }

  /**
   * The dtype for a safetensors name such as {@code "BF16"}.
   *
   * @throws IllegalArgumentException naming the dtype when it is unknown
   */
  public static DType parse(String name) {
    try {
      return valueOf(name.toUpperCase(Locale.ROOT));
    } catch (IllegalArgumentException e) {
      throw new IllegalArgumentException(
          "unknown dtype '" + name + "' (known: BOOL, U8, I8, I16, I32, I64, F8_E4M3, F16, BF16, F32, F64)");
    }
  }
}
