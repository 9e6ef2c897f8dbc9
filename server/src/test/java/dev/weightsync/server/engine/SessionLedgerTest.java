package dev.weightsync.server.engine;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class SessionLedgerTest {

  @TempDir
  Path dir;

  @Test
  void aRecordLandsFromAnInterruptedThreadAndTheInterruptIsKept() throws Exception {
    SessionLedger ledger = new SessionLedger(dir);
    EngineWeights mixed = new EngineWeights(EngineWeights.Kind.MAYBE_MIXED, "v1", "v2",
        "load failed");
    Thread.currentThread().interrupt();
    try {
      ledger.record("http://engine:30000", mixed);
      assertThat(Thread.currentThread().isInterrupted()).isTrue();
    } finally {
      Thread.interrupted();
    }
    assertThat(new SessionLedger(dir).get("http://engine:30000")).contains(mixed);
  }

  @Test
  void aServingEngineLeavesNothingToRecover() throws Exception {
    SessionLedger ledger = new SessionLedger(dir);
    ledger.record("e", EngineWeights.pausedClean("v1", "paused"));
    ledger.record("e", new EngineWeights(EngineWeights.Kind.SERVING, "v1", "", ""));
    assertThat(new SessionLedger(dir).get("e")).isEmpty();
  }
}
