package dev.weightsync.core.checkpoint;

import com.fasterxml.jackson.databind.JsonNode;
import dev.weightsync.core.tensor.TensorSpec;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.TreeSet;

/**
 * Two checkpoint folders compared the way docs/quantization.md judges equality: the same tensor
 * names, per tensor the same dtype, shape and bytes, and the same {@code quantization_config};
 * which shard holds a tensor is free, but an index must say so truthfully (checked when a folder
 * is opened). For quantized tensors that differ it also says how many elements differ after
 * dequantization and by how much at most.
 */
public final class CheckpointComparison {
  private CheckpointComparison() {}

  /** What differs, one line per difference; {@code identical()} when there is none. */
  public record Result(int tensorsCompared, List<String> differences) {
    public boolean identical() {
      return differences.isEmpty();
    }
  }

  /**
   * @throws IOException when a folder cannot be read as a checkpoint (the message names it)
   */
  public static Result compare(Path expected, Path actual) throws IOException {
    try (CheckpointFolder exp = CheckpointFolder.open(expected);
         CheckpointFolder act = CheckpointFolder.open(actual)) {
      Map<String, TensorSpec> e = byName(exp);
      Map<String, TensorSpec> a = byName(act);
      List<String> differences = new ArrayList<>();
      TreeSet<String> names = new TreeSet<>(e.keySet());
      names.addAll(a.keySet());
      for (String name : names) {
        TensorSpec es = e.get(name);
        TensorSpec as = a.get(name);
        if (as == null) {
          differences.add("missing tensor " + name);
        } else if (es == null) {
          differences.add("unexpected tensor " + name);
        } else if (!es.equals(as)) {
          differences.add(name + ": expected " + describe(es) + ", got " + describe(as));
        } else {
          String d = TensorComparison.compare(name, es, exp, act);
          if (d != null) {
            differences.add(d);
          }
        }
      }
      JsonNode eq = exp.config().get("quantization_config");
      JsonNode aq = act.config().get("quantization_config");
      if (!Objects.equals(eq, aq)) {
        differences.add("quantization_config differs: expected " + eq + ", got " + aq);
      }
      return new Result(e.size(), List.copyOf(differences));
    }
  }

  private static Map<String, TensorSpec> byName(CheckpointFolder f) {
    Map<String, TensorSpec> m = new LinkedHashMap<>();
    for (TensorSpec t : f.tensors()) {
      m.put(t.name(), t);
    }
    return m;
  }

  private static String describe(TensorSpec t) {
    return t.dtype() + java.util.Arrays.toString(t.shape());
  }
}
