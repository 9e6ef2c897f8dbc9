package dev.weightsync.server.engine;

import java.nio.file.Path;

/**
 * One engine's update session, as its routes have it ({@link SglangSession},
 * {@link VllmSession}): paused, loaded, confirmed and resumed through the {@link PausedEngine}
 * lease, recording what the engine holds in its {@link EngineStateHolder} before each step that
 * changes it.
 */
interface UpdateSession {

  /** Loads {@code folder} as {@code version}; the result says what the engine is left doing. */
  EngineResult run(Path folder, String version);

  /** The engine's resume route, which the lease sends. */
  String resumeRoute();
}
