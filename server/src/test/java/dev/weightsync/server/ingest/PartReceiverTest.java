package dev.weightsync.server.ingest;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;

class PartReceiverTest {

  @Test
  void callerTextIsClippedAndEscapedForLogs() {
    assertThat(Refusals.printable("step-1")).isEqualTo("step-1");
    assertThat(Refusals.printable("a\nINFO forged line")).isEqualTo("a\\x0aINFO forged line");
    assertThat(Refusals.printable("x".repeat(1024))).as("a legal name, whole")
        .isEqualTo("x".repeat(1024));
    assertThat(Refusals.printable("x".repeat(1 << 20))).isEqualTo("x".repeat(1025) + "...");
    assertThat(Refusals.printable("\n".repeat(1 << 20))).hasSizeLessThan(1024 + 8);
  }
}
