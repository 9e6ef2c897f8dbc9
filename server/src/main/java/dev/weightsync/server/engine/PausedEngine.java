package dev.weightsync.server.engine;

import java.util.logging.Logger;

/**
 * The lease on an engine that an update session holds from its pause until it ends. Opened before
 * the pause is sent (a pause whose answer was lost may still have taken effect), closed exactly
 * once on every path — success, each failure, an exception from our own code, shutdown. Closing
 * resumes the engine unless its {@link EngineWeights} forbid it (possibly mixed weights), with its
 * own bounded timeout that neither interrupts nor shutdown can cut short.
 */
final class PausedEngine {

  private static final Logger LOG = Logger.getLogger(PausedEngine.class.getName());

  /** How the lease ended. */
  enum Ending { RESUMED, LEFT_PAUSED, RESUME_FAILED, NOT_PAUSED }

  private final String engine;
  private final EngineHttp http;
  /** The engine's resume route (SGLang's /continue_generation, vLLM's /resume). */
  private final String resumeRoute;
  private final EngineStateHolder state;
  private Ending ending;
  private String resumeError = "";

  PausedEngine(String engine, EngineHttp http, String resumeRoute, EngineStateHolder state) {
    this.engine = engine;
    this.http = http;
    this.resumeRoute = resumeRoute;
    this.state = state;
  }

  /** Ends the lease (once; later calls return the first ending). */
  Ending close() {
    return end(false);
  }

  /**
   * Ends the lease resuming the engine even over possibly mixed weights: only where someone chose
   * that (resume-after-failed-load, an operator's accept-mixed).
   */
  Ending acceptMixed() {
    return end(true);
  }

  private Ending end(boolean acceptMixed) {
    if (ending != null) {
      return ending;
    }
    EngineWeights w = state.weights();
    if (!acceptMixed && !w.mayResume()) {
      LOG.warning(() -> engine + ": left paused, its weights may be a mix of '" + w.version()
          + "' and '" + w.target() + "' (" + w.reason() + ")");
      ending = Ending.LEFT_PAUSED;
      return ending;
    }
    try {
      http.resume(resumeRoute);
      ending = Ending.RESUMED;
    } catch (EngineCallException e) {
      resumeError = e.getMessage();
      LOG.warning(() -> engine + ": " + resumeRoute + " failed: " + resumeError);
      ending = Ending.RESUME_FAILED;
    }
    return ending;
  }

  /** The pause never took effect (the engine refused it or was not reached): nothing to end. */
  void notPaused() {
    if (ending == null) {
      ending = Ending.NOT_PAUSED;
    }
  }

  String resumeError() {
    return resumeError;
  }
}
