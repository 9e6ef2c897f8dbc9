package dev.weightsync.server.engine;


/**
 * Delivers a staged version to one inference engine ({@link LeasedEngineAdapter}) or, on a trainer-side
 * sidecar, to one engine-side sidecar ({@code relay.RelayAdapter}). Each adapter owns its retries and
 * timeouts and never leaves the engine paused without reporting it.
 *
 * <p>Not called concurrently for the same engine.
 */
public interface EngineAdapter {

  /** A name for logs, status and metrics (the engine's URL). */
  String name();

  /** Runs the engine's update session for a staged folder (or relays it onwards). */
  EngineResult update(Delivery delivery);

  /** The last known state. */
  EngineState state();

  /** Whether the engine answers its health check now (for readiness). */
  boolean healthy();

  /**
   * At shutdown, once the grace is over: ends the calls in flight so that the session ends now,
   * through its lease (an engine with untouched weights is still resumed). Never interrupts.
   */
  default void abandon() {
  }
}
