package dev.weightsync.server.config;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.weightsync.core.quant.Format;
import dev.weightsync.core.quant.QuantScheme;
import java.io.IOException;
import java.nio.file.Files;

/**
 * What a configuration asks the sidecar to stage: the format and rules from {@code format},
 * {@code group-size} and the served model's {@code quantization-config}. One place, so that
 * {@code serve --check-config} refuses what {@code serve} would.
 */
public final class OutputScheme {

  private OutputScheme() {}

  /** The parsed {@code quantization-config} file, or null when none is configured. */
  public static JsonNode engineConfig(SidecarConfig config) {
    if (config.quantizationConfig() == null) {
      return null;
    }
    String text;
    try {
      text = Files.readString(config.quantizationConfig());
    } catch (IOException e) {
      throw new IllegalArgumentException("quantization-config " + config.quantizationConfig()
          + " cannot be read: " + e, e);
    }
    try {
      return new ObjectMapper().readTree(text);
    } catch (JsonProcessingException e) {
      throw new IllegalArgumentException("quantization-config " + config.quantizationConfig()
          + " is not JSON: " + e.getOriginalMessage(), e);
    }
  }

  /** The scheme; fp8-block when neither a format nor a quantization config is given. */
  public static QuantScheme resolve(SidecarConfig config, JsonNode engineConfig) {
    Format format = config.outputFormat();
    if (format == null && engineConfig == null) {
      format = Format.FP8_BLOCK;
    }
    return QuantScheme.resolve(format, config.groupSize(), engineConfig);
  }
}
