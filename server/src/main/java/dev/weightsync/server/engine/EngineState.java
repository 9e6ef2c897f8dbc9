package dev.weightsync.server.engine;

/** What the sidecar knows of an engine between versions. */
public record EngineState(String engine, String state, String loadedVersion, String lastError) {
  public static final String SERVING = "SERVING";
  public static final String PAUSED_FAILED = "PAUSED_FAILED";
  public static final String FAILED_RESUMED = "FAILED_RESUMED";
  public static final String UNKNOWN = "UNKNOWN";
  /** A relay target that could not be reached or answered with an error. */
  public static final String UNREACHABLE = "UNREACHABLE";
}
