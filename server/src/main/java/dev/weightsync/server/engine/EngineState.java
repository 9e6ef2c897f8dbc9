package dev.weightsync.server.engine;

/**
 * What the sidecar reports of an engine (status, metrics): for an SGLang engine the kind of its
 * {@link EngineWeights} (UNKNOWN, SERVING, PAUSED_CLEAN, MAYBE_MIXED, SERVING_MIXED), for a relay
 * target SERVING, UNKNOWN or UNREACHABLE; UNREACHABLE also when its health check fails now.
 */
public record EngineState(String engine, String state, String loadedVersion, String lastError) {
  public static final String SERVING = "SERVING";
  public static final String UNKNOWN = "UNKNOWN";
  /** A relay target that could not be reached or answered with an error. */
  public static final String UNREACHABLE = "UNREACHABLE";
}
