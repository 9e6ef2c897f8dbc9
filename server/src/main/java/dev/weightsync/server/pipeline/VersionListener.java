package dev.weightsync.server.pipeline;

import io.grpc.Status;

/** Told how the version of a committed part ended. Called once, from any thread. */
public interface VersionListener {
  void completed(VersionOutcome outcome);

  void failed(Status status);
}
