package dev.weightsync.server.engine;

/**
 * What an engine's weights are, as far as this sidecar can prove: the one owner of what an engine
 * may serve. Recorded in the {@link SessionLedger} before every step that changes it, so that it
 * outlives a crash.
 *
 * <ul>
 *   <li>{@code UNKNOWN}: never paused by this sidecar; it serves what it was started with.
 *   <li>{@code SERVING(version)}: this sidecar loaded, confirmed and resumed {@code version}.
 *   <li>{@code PAUSED_CLEAN(version)}: paused (or perhaps paused: the answer may have been lost)
 *       with complete weights of {@code version}; resuming it is safe.
 *   <li>{@code MAYBE_MIXED(version, target)}: a step that changes weights or their layout was sent
 *       (begin_weight_update, the load) and no complete version was confirmed since: the engine may
 *       hold a mix of {@code version} and {@code target}. It is never resumed from here; the only
 *       way out is a load of a complete staged version that get_weight_version confirms.
 *   <li>{@code SERVING_MIXED(version, target)}: resumed over possibly mixed weights on purpose
 *       (resume-after-failed-load, or an operator's {@code resume --accept-mixed}).
 * </ul>
 *
 * <p>The label an engine reports is no evidence by itself: SGLang changes it only when a load
 * succeeds, so after a failed load it still shows the old label over mixed weights.
 */
public record EngineWeights(Kind kind, String version, String target, String reason) {

  public enum Kind { UNKNOWN, SERVING, PAUSED_CLEAN, MAYBE_MIXED, SERVING_MIXED }

  public EngineWeights {
    version = version == null ? "" : version;
    target = target == null ? "" : target;
    reason = reason == null ? "" : reason;
  }

  public static EngineWeights unknown() {
    return new EngineWeights(Kind.UNKNOWN, "", "", "");
  }

  public static EngineWeights serving(String version) {
    return new EngineWeights(Kind.SERVING, version, "", "");
  }

  public static EngineWeights pausedClean(String version, String reason) {
    return new EngineWeights(Kind.PAUSED_CLEAN, version, "", reason);
  }

  public static EngineWeights maybeMixed(String from, String target, String reason) {
    return new EngineWeights(Kind.MAYBE_MIXED, from, target, reason);
  }

  public static EngineWeights servingMixed(String from, String target, String reason) {
    return new EngineWeights(Kind.SERVING_MIXED, from, target, reason);
  }

  public boolean mixed() {
    return kind == Kind.MAYBE_MIXED || kind == Kind.SERVING_MIXED;
  }

  /** Whether continue_generation may be sent: never while the weights may be mixed and paused. */
  public boolean mayResume() {
    return kind != Kind.MAYBE_MIXED;
  }

  /** The same weights with another reason (what happened, for status). */
  public EngineWeights because(String why) {
    return new EngineWeights(kind, version, target, why);
  }
}
