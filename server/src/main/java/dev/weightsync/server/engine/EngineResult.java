package dev.weightsync.server.engine;

import java.util.List;

/**
 * One engine's result for one version. {@code failedStep} names the step that failed (pause,
 * flush, begin, load, end, continue, confirm; relay for a relay target), empty when it loaded. A
 * relay target's result carries the results of the engines behind it in {@code engines}.
 */
public record EngineResult(String engine, EngineOutcome outcome, String loadedVersion,
    String message, double seconds, String failedStep, List<EngineResult> engines) {

  public EngineResult {
    engines = engines == null ? List.of() : List.copyOf(engines);
  }

  public EngineResult(String engine, EngineOutcome outcome, String loadedVersion, String message,
      double seconds, String failedStep) {
    this(engine, outcome, loadedVersion, message, seconds, failedStep, List.of());
  }
}
