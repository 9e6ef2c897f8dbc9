package dev.weightsync.server.engine;

/**
 * An engine call that did not give an answer the session can go on from. {@code mayHaveRun} says
 * whether the engine may still be doing (or have done) the work: true when the call timed out, the
 * connection dropped after the request went out, the answer was unreadable, or the call was
 * abandoned; false when the engine answered with an error or was never reached.
 */
final class EngineCallException extends Exception {
  private static final long serialVersionUID = 1L;

  private final boolean mayHaveRun;

  EngineCallException(String message, boolean mayHaveRun) {
    super(message);
    this.mayHaveRun = mayHaveRun;
  }

  boolean mayHaveRun() {
    return mayHaveRun;
  }
}
