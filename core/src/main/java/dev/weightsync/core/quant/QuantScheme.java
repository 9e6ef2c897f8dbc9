package dev.weightsync.core.quant;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Objects;
import java.util.Set;
import java.util.TreeSet;

/**
 * The output format and its selection rules: for FP8 the modules an engine config keeps out of
 * quantization, for INT4 the group size and the compressed-tensors {@code ignore} rules.
 */
public record QuantScheme(Format format, int groupSize, Set<String> modulesNotConverted,
    List<String> ignore) {

  public static final int DEFAULT_GROUP_SIZE = 128;

  /** The spec's default ignore list: in effect only routed experts are quantized. */
  public static final List<String> DEFAULT_INT4_IGNORE = List.of(
      "re:.*lm_head.*", "re:.*norm.*", "re:.*embed.*", "re:.*self_attn.*",
      "re:.*shared_experts.*", "re:.*mlp\\.(gate|up|gate_up|down)_proj.*", "re:.*mlp\\.gate\\.*");

  public QuantScheme {
    Objects.requireNonNull(format, "format");
    modulesNotConverted = Set.copyOf(modulesNotConverted);
    ignore = List.copyOf(ignore);
    if (format == Format.INT4_GROUP && (groupSize <= 0 || groupSize % 8 != 0)) {
      throw new IllegalArgumentException(
          "group size must be a positive multiple of 8, got " + groupSize);
    }
  }

  /** A scheme from the command line alone: no engine config. */
  public static QuantScheme of(Format format, Integer groupSize) {
    if (groupSize != null && format != Format.INT4_GROUP) {
      throw new IllegalArgumentException("--group-size applies to int4-group only, not " + format);
    }
    int g = groupSize == null ? DEFAULT_GROUP_SIZE : groupSize;
    return new QuantScheme(format, g, Set.of(),
        format == Format.INT4_GROUP ? DEFAULT_INT4_IGNORE : List.of());
  }

  /**
   * The scheme for an engine's {@code config.json} (or its {@code quantization_config} object),
   * checked against explicit options where given.
   *
   * @param format the {@code --format} option, or null
   * @param groupSize the {@code --group-size} option, or null
   * @param engineConfig the parsed config file, or null
   */
  public static QuantScheme resolve(Format format, Integer groupSize, JsonNode engineConfig) {
    if (engineConfig == null) {
      if (format == null) {
        throw new IllegalArgumentException("no output format: give --format or a quantization config");
      }
      return of(format, groupSize);
    }
    QuantScheme fromConfig = fromConfig(engineConfig);
    if (format != null && format != fromConfig.format) {
      throw new IllegalArgumentException("--format " + format + " disagrees with the quantization"
          + " config, which describes " + fromConfig.format);
    }
    if (groupSize != null && (fromConfig.format != Format.INT4_GROUP
        || groupSize != fromConfig.groupSize)) {
      throw new IllegalArgumentException("--group-size " + groupSize + " disagrees with the"
          + " quantization config (" + fromConfig.format
          + (fromConfig.format == Format.INT4_GROUP ? ", group_size " + fromConfig.groupSize : "")
          + ")");
    }
    return fromConfig;
  }

  /** Parses a {@code config.json} holding {@code quantization_config}, or that object itself. */
  public static QuantScheme fromConfig(JsonNode config) {
    JsonNode qc = config.has("quantization_config") ? config.get("quantization_config") : config;
    if (qc == null || !qc.isObject() || !qc.has("quant_method")) {
      throw new IllegalArgumentException(
          "the quantization config has no quantization_config.quant_method");
    }
    String method = qc.get("quant_method").asText();
    switch (method) {
      case "fp8" -> {
        JsonNode block = qc.get("weight_block_size");
        if (block == null || !block.isArray() || block.size() != 2
            || block.get(0).asInt() != 128 || block.get(1).asInt() != 128) {
          throw new IllegalArgumentException("fp8 quantization_config needs weight_block_size"
              + " [128, 128]; got " + block + " (only 128x128 blocks are supported)");
        }
        String scaleFmt = qc.path("scale_fmt").asText("");
        if (!scaleFmt.isEmpty() && !scaleFmt.equals("ue8m0")) {
          throw new IllegalArgumentException("unsupported fp8 scale_fmt '" + scaleFmt + "'");
        }
        Set<String> excluded = new TreeSet<>();
        excluded.addAll(strings(qc.get("modules_to_not_convert")));
        excluded.addAll(strings(qc.get("ignored_layers")));
        return new QuantScheme(scaleFmt.equals("ue8m0") ? Format.FP8_BLOCK_UE8M0 : Format.FP8_BLOCK,
            DEFAULT_GROUP_SIZE, excluded, List.of());
      }
      case "compressed-tensors" -> {
        String fmt = qc.path("format").asText("");
        if (!fmt.equals("pack-quantized")) {
          throw new IllegalArgumentException("compressed-tensors format '" + fmt
              + "' is not supported (only pack-quantized INT4)");
        }
        JsonNode groups = qc.get("config_groups");
        if (groups == null || !groups.isObject() || groups.size() != 1) {
          throw new IllegalArgumentException(
              "compressed-tensors config needs exactly one entry in config_groups");
        }
        JsonNode w = groups.elements().next().path("weights");
        if (w.path("num_bits").asInt() != 4 || !w.path("type").asText().equals("int")
            || !w.path("strategy").asText().equals("group") || !w.path("symmetric").asBoolean()) {
          throw new IllegalArgumentException("compressed-tensors weights must be symmetric 4-bit"
              + " int with strategy group; got " + w);
        }
        int g = w.path("group_size").asInt(-1);
        List<String> ignore = qc.has("ignore") ? strings(qc.get("ignore")) : DEFAULT_INT4_IGNORE;
        return new QuantScheme(Format.INT4_GROUP, g, Set.of(), ignore);
      }
      default -> throw new IllegalArgumentException("unsupported quant_method '" + method
          + "' (supported: fp8 with 128x128 blocks, compressed-tensors pack-quantized int4)");
    }
  }

  private static List<String> strings(JsonNode array) {
    List<String> out = new ArrayList<>();
    if (array != null && array.isArray()) {
      for (Iterator<JsonNode> it = array.elements(); it.hasNext(); ) {
        out.add(it.next().asText());
      }
    }
    return out;
  }
}
