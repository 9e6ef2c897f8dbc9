package dev.weightsync.core.quant;

/** A NaN or infinity in an input tensor; the message names the tensor and element. */
public final class NonFiniteWeightException extends IllegalArgumentException {
  private static final long serialVersionUID = 1L;

  private final String tensor;
  private final long elementIndex;
  private final float value;

  public NonFiniteWeightException(String tensor, long elementIndex, float value) {
    super("tensor " + tensor + ": non-finite value " + value + " at element " + elementIndex);
    this.tensor = tensor;
    this.elementIndex = elementIndex;
    this.value = value;
  }

  public float value() {
    return value;
  }

  public String tensor() {
    return tensor;
  }

  public long elementIndex() {
    return elementIndex;
  }
}
