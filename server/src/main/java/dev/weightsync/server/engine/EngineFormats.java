package dev.weightsync.server.engine;

import dev.weightsync.core.quant.Format;
import dev.weightsync.core.quant.QuantScheme;
import java.util.List;
import java.util.Optional;
import java.util.Set;

/**
 * Which staged checkpoints each engine can serve, so that a format it cannot is refused at
 * start (and by {@code serve --check-config}) rather than by the engine at the first load, or
 * at its first request after a load that seemed to work. The facts, and the sources they were
 * read from, are in docs/engines.md ("Formats each engine serves").
 */
public final class EngineFormats {

  /** The engines the sidecar drives. */
  public enum Engine {
    SGLANG("SGLang", "sglang-url",
        "its compressed-tensors W4A16 layers run on Marlin, which takes groups of 32, 64 or 128"
            + " (another size loads, then fails at the first request)"),
    VLLM("vLLM", "vllm-url",
        "its W4A16 kernels (Marlin; Machete on Hopper) take groups of 32, 64 or 128");

    private final String displayName;
    private final String option;
    private final String int4Kernels;

    Engine(String displayName, String option, String int4Kernels) {
      this.displayName = displayName;
      this.option = option;
      this.int4Kernels = int4Kernels;
    }
  }

  /** INT4 group sizes both engines' W4A16 GPU kernels accept (per-channel, -1, is not staged). */
  static final Set<Integer> INT4_GROUP_SIZES = Set.of(32, 64, 128);

  private EngineFormats() {}

  /** Why {@code engine} cannot serve {@code scheme}, or empty when it can. */
  public static Optional<String> refusal(Engine engine, QuantScheme scheme) {
    if (scheme.format() == Format.INT4_GROUP && !INT4_GROUP_SIZES.contains(scheme.groupSize())) {
      return Optional.of(engine.displayName + " cannot serve " + scheme.format() + " with group"
          + " size " + scheme.groupSize() + ": " + engine.int4Kernels
          + "; use group-size 32, 64 or 128 (docs/engines.md)");
    }
    return Optional.empty();
  }

  /**
   * Refuses a scheme that one of the configured engines cannot serve, naming the engine, its
   * URL and the format.
   *
   * @throws IllegalArgumentException for the first engine that cannot
   */
  public static void check(QuantScheme scheme, List<String> sglangUrls, List<String> vllmUrls) {
    check(Engine.SGLANG, scheme, sglangUrls);
    check(Engine.VLLM, scheme, vllmUrls);
  }

  private static void check(Engine engine, QuantScheme scheme, List<String> urls) {
    if (urls.isEmpty()) {
      return;
    }
    refusal(engine, scheme).ifPresent(why -> {
      throw new IllegalArgumentException(why + " [" + engine.option + " " + urls.get(0) + "]");
    });
  }
}
