package dev.weightsync.server.engine;

/**
 * One engine's result for one version. {@code failedStep} names the step that failed (pause,
 * flush, begin, load, end, continue, confirm), empty when it loaded.
 */
public record EngineResult(String engine, EngineOutcome outcome, String loadedVersion,
    String message, double seconds, String failedStep) {}
