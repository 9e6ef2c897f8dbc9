package dev.weightsync.server.pipeline;

import io.grpc.Status;

/** Told how the version of a committed part ended. Called once, from any thread. */
public interface VersionListener {
  void completed(VersionOutcome outcome);

  void failed(Status status);

  /**
   * The version reached the engines but too few loaded it for the delivery policy. A relay sender
   * wants the whole outcome (each engine's result) to apply its own policy; a trainer gets
   * {@code status}.
   */
  default void enginesFailed(VersionOutcome outcome, Status status) {
    failed(status);
  }
}
