package dev.weightsync.server.ingest;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;

class PartReceiverTest {

  @Test
  void callerTextIsClippedAndEscapedForLogs() {
    assertThat(PartReceiver.printable("step-1")).isEqualTo("step-1");
    assertThat(PartReceiver.printable("a\nINFO forged line")).isEqualTo("a\\x0aINFO forged line");
    assertThat(PartReceiver.printable("x".repeat(100))).isEqualTo("x".repeat(64) + "...");
  }
}
