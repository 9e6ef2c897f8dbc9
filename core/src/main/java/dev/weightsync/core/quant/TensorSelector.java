package dev.weightsync.core.quant;

import dev.weightsync.core.tensor.DType;
import dev.weightsync.core.tensor.TensorSpec;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Pattern;

/** Decides, per docs/quantization.md's selection rules, what each input tensor becomes. */
public final class TensorSelector {

  /** Names containing any of these stay unquantized in FP8. */
  static final List<String> FP8_EXCLUDED_SUBSTRINGS = List.of(
      "layernorm", "embed", "router", "mlp.gate.", "norm", "lm_head", "eh_proj", "weights_proj",
      "conv1d", "A_log", "dt_bias", "in_proj_a", "in_proj_b");

  private final QuantScheme scheme;
  private final List<IgnoreRule> ignoreRules = new ArrayList<>();

  public TensorSelector(QuantScheme scheme) {
    this.scheme = scheme;
    for (String rule : scheme.ignore()) {
      ignoreRules.add(IgnoreRule.parse(rule));
    }
  }

  public QuantScheme scheme() {
    return scheme;
  }

  public TensorPlan plan(TensorSpec t) {
    return switch (scheme.format()) {
      case BF16 -> new TensorPlan.PassThrough(t, false);
      case FP8_BLOCK, FP8_BLOCK_UE8M0 -> fp8Selected(t)
          ? new TensorPlan.Fp8Block(t, scheme.format() == Format.FP8_BLOCK_UE8M0)
          : new TensorPlan.PassThrough(t, false);
      case INT4_GROUP -> planInt4(t);
    };
  }

  private boolean fp8Selected(TensorSpec t) {
    if (!isQuantizable2d(t) || !t.name().contains("weight")) {
      return false;
    }
    for (String s : FP8_EXCLUDED_SUBSTRINGS) {
      if (t.name().contains(s)) {
        return false;
      }
    }
    return !scheme.modulesNotConverted().contains(TensorPlan.moduleName(t.name()));
  }

  private TensorPlan planInt4(TensorSpec t) {
    if (!t.name().endsWith(".weight") || !isQuantizable2d(t)) {
      return new TensorPlan.PassThrough(t, false);
    }
    String module = TensorPlan.moduleName(t.name());
    for (IgnoreRule r : ignoreRules) {
      if (r.matches(module)) {
        return new TensorPlan.PassThrough(t, false);
      }
    }
    if (t.cols() % scheme.groupSize() != 0) {
      return new TensorPlan.PassThrough(t, true);
    }
    return new TensorPlan.Int4Group(t, scheme.groupSize());
  }

  /** 2-D and of a dtype the quantizers read (BF16, F16, F32). */
  private static boolean isQuantizable2d(TensorSpec t) {
    return t.rank() == 2
        && (t.dtype() == DType.BF16 || t.dtype() == DType.F16 || t.dtype() == DType.F32);
  }

  /** A compressed-tensors ignore rule: {@code re:PATTERN} (Python re.match) or a module prefix. */
  record IgnoreRule(String text, Pattern regex) {
    static IgnoreRule parse(String rule) {
      if (rule.startsWith("re:")) {
        return new IgnoreRule(rule, Pattern.compile(rule.substring(3)));
      }
      return new IgnoreRule(rule, null);
    }

    boolean matches(String module) {
      if (regex != null) {
        return regex.matcher(module).lookingAt();
      }
      return module.equals(text) || module.startsWith(text + ".");
    }
  }
}
