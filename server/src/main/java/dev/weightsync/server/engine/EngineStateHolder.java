package dev.weightsync.server.engine;

import java.io.IOException;
import java.util.logging.Logger;

/**
 * One engine's {@link EngineWeights}, in memory and in the ledger: {@link #record} writes the
 * ledger before the caller sends the step the new state describes. When the ledger cannot be
 * written, the step must not be sent (the caller is told by the exception).
 */
final class EngineStateHolder {

  private static final Logger LOG = Logger.getLogger(EngineStateHolder.class.getName());

  private final String engine;
  private final SessionLedger ledger;
  private volatile EngineWeights weights;

  EngineStateHolder(String engine, SessionLedger ledger) {
    this.engine = engine;
    this.ledger = ledger;
    this.weights = ledger.get(engine).orElse(EngineWeights.unknown());
  }

  EngineWeights weights() {
    return weights;
  }

  /** Records {@code w} durably, then in memory. */
  void record(EngineWeights w) throws IOException {
    ledger.record(engine, w);
    weights = w;
  }

  /** As {@link #record}, for a state reached after the fact: a ledger failure is only logged. */
  void settle(EngineWeights w) {
    try {
      ledger.record(engine, w);
    } catch (IOException e) {
      LOG.warning(engine + ": cannot update the session ledger: " + e);
    }
    weights = w;
  }
}
