package dev.weightsync.core.quant;

import java.util.Arrays;
import java.util.stream.Collectors;

/** Output formats of the sidecar and of {@code convert}. */
public enum Format {
  /** FP8 e4m3, 128x128 blocks, F32 scales. */
  FP8_BLOCK("fp8-block"),
  /** As {@link #FP8_BLOCK} with power-of-two (UE8M0) scales. */
  FP8_BLOCK_UE8M0("fp8-block-ue8m0"),
  /** Symmetric INT4 in groups of G along a row, compressed-tensors pack-quantized. */
  INT4_GROUP("int4-group"),
  /** No quantization: BF16 in, BF16 out. */
  BF16("bf16");

  private final String id;

  Format(String id) {
    this.id = id;
  }

  /** The name used on the command line and in configuration, e.g. {@code fp8-block}. */
  public String id() {
    return id;
  }

  public static Format parse(String id) {
    for (Format f : values()) {
      if (f.id.equalsIgnoreCase(id) || f.name().equalsIgnoreCase(id)) {
        return f;
      }
    }
    throw new IllegalArgumentException("unknown format '" + id + "' (expected one of "
        + Arrays.stream(values()).map(Format::id).collect(Collectors.joining(", ")) + ")");
  }

  @Override
  public String toString() {
    return id;
  }
}
