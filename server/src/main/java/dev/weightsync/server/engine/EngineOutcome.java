package dev.weightsync.server.engine;

/** How an engine came out of an update session. */
public enum EngineOutcome {
  /** Loaded the version and confirmed it; serving it. */
  LOADED,
  /** Failed before its weights were touched; resumed on its previous version. */
  FAILED_UNTOUCHED,
  /** The load failed even when retried; left paused so it never serves a mix of versions. */
  FAILED_PAUSED,
  /** The load failed and the engine was resumed anyway (resume-after-failed-load). */
  FAILED_RESUMED
}
