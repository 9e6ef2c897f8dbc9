package dev.weightsync.server.engine;

/** One engine's result for one version. */
public record EngineResult(String engine, EngineOutcome outcome, String loadedVersion,
    String message, double seconds) {}
