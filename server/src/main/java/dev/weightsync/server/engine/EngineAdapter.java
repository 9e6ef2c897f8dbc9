package dev.weightsync.server.engine;

import java.nio.file.Path;

/**
 * Delivers a complete staged version to one inference engine. Each adapter owns its retries and
 * timeouts and never leaves the engine paused without reporting it.
 *
 * <p>Not called concurrently for the same engine.
 */
public interface EngineAdapter {

  /** A name for logs, status and metrics (the engine's URL). */
  String name();

  /** Runs the engine's update session for the folder {@code staged} holding {@code version}. */
  EngineResult update(Path staged, String version);

  /** The last known state. */
  EngineState state();

  /** Whether the engine answers its health check now (for readiness). */
  boolean healthy();
}
