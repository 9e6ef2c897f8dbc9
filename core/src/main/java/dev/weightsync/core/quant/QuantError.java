package dev.weightsync.core.quant;

/**
 * The spec's error statistics over the quantized elements of a tensor or version: the largest
 * absolute error and the sums behind the relative RMS error. Immutable; {@link #plus} merges.
 */
public record QuantError(double maxAbs, double sumSquaredError, double sumSquaredRef, long elements) {

  public static final QuantError NONE = new QuantError(0, 0, 0, 0);

  public QuantError plus(QuantError o) {
    return new QuantError(Math.max(maxAbs, o.maxAbs), sumSquaredError + o.sumSquaredError,
        sumSquaredRef + o.sumSquaredRef, elements + o.elements);
  }

  /** {@code sqrt(sum (deq - W)^2 / sum W^2)}; 0 when nothing was quantized or W is all zero. */
  public double relRms() {
    return sumSquaredRef == 0 ? 0 : Math.sqrt(sumSquaredError / sumSquaredRef);
  }
}
