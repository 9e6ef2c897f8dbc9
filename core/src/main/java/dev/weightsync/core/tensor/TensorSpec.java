package dev.weightsync.core.tensor;

import java.util.Arrays;
import java.util.Objects;

/**
 * A named tensor's type and shape (row-major). Sizes are checked for overflow, so a valid spec
 * always has a byte length that fits a {@code long}.
 */
public record TensorSpec(String name, DType dtype, long[] shape) {

  public TensorSpec {
    Objects.requireNonNull(name, "name");
    Objects.requireNonNull(dtype, "dtype");
    shape = shape.clone();
    for (long d : shape) {
      if (d < 0) {
        throw new IllegalArgumentException(
            "tensor " + name + ": negative dimension in shape " + Arrays.toString(shape));
      }
    }
    elementCount(name, shape, dtype); // validates that the byte length does not overflow
  }

  public static TensorSpec of(String name, DType dtype, long... shape) {
    return new TensorSpec(name, dtype, shape);
  }

  @Override
  public long[] shape() {
    return shape.clone();
  }

  public int rank() {
    return shape.length;
  }

  public long dim(int i) {
    return shape[i];
  }

  public long elementCount() {
    return elementCount(name, shape, dtype);
  }

  public long byteLength() {
    return elementCount() * dtype.byteSize();
  }

  /** Rows and columns for a 2-D tensor. */
  public long rows() {
    requireRank2();
    return shape[0];
  }

  public long cols() {
    requireRank2();
    return shape[1];
  }

  private void requireRank2() {
    if (shape.length != 2) {
      throw new IllegalStateException("tensor " + name + " is not 2-D: " + Arrays.toString(shape));
    }
  }

  private static long elementCount(String name, long[] shape, DType dtype) {
    try {
      long n = 1;
      for (long d : shape) {
        n = Math.multiplyExact(n, d);
      }
      Math.multiplyExact(n, (long) dtype.byteSize());
      return n;
    } catch (ArithmeticException e) {
      throw new IllegalArgumentException(
          "tensor " + name + ": shape " + Arrays.toString(shape) + " overflows a 64-bit byte length");
    }
  }

  @Override
  public boolean equals(Object o) {
    return o instanceof TensorSpec t
        && name.equals(t.name)
        && dtype == t.dtype
        && Arrays.equals(shape, t.shape);
  }

  @Override
  public int hashCode() {
    return Objects.hash(name, dtype, Arrays.hashCode(shape));
  }

  @Override
  public String toString() {
    return name + " " + dtype + Arrays.toString(shape);
  }
}
