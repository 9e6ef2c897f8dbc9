package dev.weightsync.core.quant;

import com.fasterxml.jackson.databind.JsonNode;
import dev.weightsync.core.tensor.DType;
import java.util.List;

/**
 * Recognizes input that is already quantized. Quantizing it again would write a folder that
 * still loads and serves garbage (an FP8 code read as a weight, a scale quantized as a matrix), so
 * {@code convert}, {@code push} and the sidecar refuse it, naming the tensor or the file.
 */
public final class AlreadyQuantized {
  private AlreadyQuantized() {}

  /** Name endings that only quantized checkpoints have (and that our outputs take). */
  static final List<String> QUANTIZED_SUFFIXES =
      List.of("_scale_inv", ".weight_packed", ".weight_scale", ".weight_shape");

  /** Why {@code name} of {@code dtype} cannot be source weights, or null when it can. */
  public static String reason(String name, DType dtype) {
    if (dtype == DType.F8_E4M3) {
      return "tensor " + name + " is F8_E4M3: the input is already quantized (send the BF16 weights)";
    }
    for (String suffix : QUANTIZED_SUFFIXES) {
      if (name.endsWith(suffix)) {
        return "tensor " + name + " is named like a quantized checkpoint's '*" + suffix
            + "' (the input is already quantized, or the name would collide with an output)";
      }
    }
    return null;
  }

  /** Why a source {@code config.json} shows a quantized checkpoint, or null when it does not. */
  public static String configReason(JsonNode config) {
    if (config != null && config.hasNonNull("quantization_config")) {
      return "config.json has a quantization_config ("
          + config.get("quantization_config").path("quant_method").asText("?")
          + "): the input is already quantized (give the BF16 checkpoint)";
    }
    return null;
  }
}
