package dev.weightsync.server.pipeline;

/**
 * What the pipeline tells the outside about versions as they end. Metrics implement it; the
 * pipeline knows nothing of how they are counted.
 */
public interface VersionEvents {

  /** A version that reached the engines (loaded by enough of them or not). */
  void versionDelivered(VersionOutcome outcome);

  /** Whether {@code engine} missed the last version delivered to it. */
  void engineOutOfDate(String engine, boolean behind);

  /**
   * A version that ended before any engine was called: {@code outcome} is the reason
   * ({@code deadline_exceeded}, {@code internal}), {@code seconds} since its first header.
   */
  void updateFailed(String outcome, double seconds);

  /** Tells nobody. */
  VersionEvents NONE = new VersionEvents() {
    @Override
    public void versionDelivered(VersionOutcome outcome) {
    }

    @Override
    public void engineOutOfDate(String engine, boolean behind) {
    }

    @Override
    public void updateFailed(String outcome, double seconds) {
    }
  };
}
