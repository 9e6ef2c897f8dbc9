package dev.weightsync.core.quant;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.Collection;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;

/** Builds the output {@code config.json}'s {@code quantization_config} per docs/quantization.md. */
public final class QuantizationConfigs {
  private QuantizationConfigs() {}

  private static final JsonNodeFactory JSON = JsonNodeFactory.instance;

  /**
   * The {@code quantization_config} for a version quantized under {@code scheme} with these
   * plans, or null for {@link Format#BF16} (no quantization).
   */
  public static ObjectNode build(QuantScheme scheme, Collection<? extends TensorPlan> plans) {
    return switch (scheme.format()) {
      case BF16 -> null;
      case FP8_BLOCK, FP8_BLOCK_UE8M0 -> fp8(scheme, plans);
      case INT4_GROUP -> int4(scheme, plans);
    };
  }

  private static ObjectNode fp8(QuantScheme scheme, Collection<? extends TensorPlan> plans) {
    TreeSet<String> notConverted = new TreeSet<>();
    for (TensorPlan p : plans) {
      if (p instanceof TensorPlan.PassThrough) {
        notConverted.add(TensorPlan.moduleName(p.input().name()));
      }
    }
    ObjectNode qc = JSON.objectNode();
    qc.put("activation_scheme", "dynamic");
    qc.put("fmt", "e4m3");
    qc.put("quant_method", "fp8");
    qc.putArray("weight_block_size").add(128).add(128);
    ArrayNode list = qc.putArray("modules_to_not_convert");
    notConverted.forEach(list::add);
    if (scheme.format() == Format.FP8_BLOCK_UE8M0) {
      qc.put("scale_fmt", "ue8m0");
    }
    return qc;
  }

  private static ObjectNode int4(QuantScheme scheme, Collection<? extends TensorPlan> plans) {
    ObjectNode qc = JSON.objectNode();
    ObjectNode weights = qc.putObject("config_groups").putObject("group_0");
    weights.putNull("input_activations");
    weights.putNull("output_activations");
    weights.putArray("targets").add("Linear");
    ObjectNode w = weights.putObject("weights");
    w.putNull("actorder");
    w.putNull("block_structure");
    w.put("dynamic", false);
    w.put("group_size", scheme.groupSize());
    w.put("num_bits", 4);
    w.put("observer", "minmax");
    w.putObject("observer_kwargs");
    w.put("strategy", "group");
    w.put("symmetric", true);
    w.put("type", "int");
    qc.put("format", "pack-quantized");
    ArrayNode ignore = qc.putArray("ignore");
    scheme.ignore().forEach(ignore::add);
    TreeSet<String> appended = new TreeSet<>();
    for (TensorPlan p : plans) {
      if (p instanceof TensorPlan.PassThrough pt && pt.indivisible()) {
        appended.add(TensorPlan.moduleName(p.input().name()));
      }
    }
    appended.forEach(ignore::add);
    qc.putNull("kv_cache_scheme");
    qc.put("quant_method", "compressed-tensors");
    qc.put("quantization_status", "compressed");
    return qc;
  }

  /** The output config: the source config with {@code quantization_config} set (or removed). */
  public static ObjectNode outputConfig(ObjectNode sourceConfig, QuantScheme scheme,
      Collection<? extends TensorPlan> plans) {
    ObjectNode out = sourceConfig.deepCopy();
    ObjectNode qc = build(scheme, plans);
    if (qc == null) {
      out.remove("quantization_config");
    } else {
      out.set("quantization_config", qc);
    }
    return out;
  }

  /** Names of INT4 candidates left unquantized because K is not a multiple of G (for warnings). */
  public static List<String> indivisible(Collection<? extends TensorPlan> plans) {
    return plans.stream()
        .filter(p -> p instanceof TensorPlan.PassThrough pt && pt.indivisible())
        .map(p -> p.input().name())
        .toList();
  }

  /**
   * One {@code quantization_config} for a version whose parts were quantized apart (relayed by
   * several trainer-side sidecars): lists of names (modules left unconverted, ignored) are joined
   * as {@link #build} would have listed them, every other field must agree. Null when every part is unquantized.
   *
   * @throws IllegalArgumentException naming the field the parts disagree on
   */
  public static ObjectNode merge(List<ObjectNode> parts) {
    ObjectNode merged = null;
    for (int i = 0; i < parts.size(); i++) {
      ObjectNode p = parts.get(i);
      if (i > 0 && (p == null) != (merged == null)) {
        throw new IllegalArgumentException("some parts are quantized and some are not");
      }
      if (p == null) {
        continue;
      }
      if (merged == null) {
        merged = p.deepCopy();
        continue;
      }
      for (Map.Entry<String, JsonNode> kv : p.properties()) {
        JsonNode mine = merged.get(kv.getKey());
        JsonNode theirs = kv.getValue();
        if (mine != null && mine.isArray() && theirs.isArray() && textual(mine) && textual(theirs)) {
          ArrayNode a = merged.putArray(kv.getKey());
          join(texts(mine), texts(theirs)).forEach(a::add);
        } else if (!theirs.equals(mine)) {
          throw new IllegalArgumentException("the parts disagree on quantization_config."
              + kv.getKey() + ": " + mine + " vs " + theirs);
        }
      }
      for (Iterator<String> it = merged.fieldNames(); it.hasNext(); ) {
        String key = it.next();
        if (!p.has(key)) {
          throw new IllegalArgumentException("the parts disagree on quantization_config." + key
              + ": present in one part, missing in another");
        }
      }
    }
    return merged;
  }

  /**
   * The lists' common beginning (the configured entries every part starts with, e.g. INT4's
   * ignore rules), then the rest of both, sorted (the per-tensor entries {@link #build} sorts):
   * what {@link #build} gives for the plans of both parts together.
   */
  private static List<String> join(List<String> a, List<String> b) {
    int common = 0;
    while (common < a.size() && common < b.size() && a.get(common).equals(b.get(common))) {
      common++;
    }
    List<String> out = new java.util.ArrayList<>(a.subList(0, common));
    TreeSet<String> rest = new TreeSet<>(a.subList(common, a.size()));
    rest.addAll(b.subList(common, b.size()));
    rest.removeAll(out);
    out.addAll(rest);
    return out;
  }

  private static List<String> texts(JsonNode array) {
    List<String> out = new java.util.ArrayList<>();
    array.forEach(n -> out.add(n.asText()));
    return out;
  }

  private static boolean textual(JsonNode array) {
    for (JsonNode n : array) {
      if (!n.isTextual()) {
        return false;
      }
    }
    return true;
  }
}
