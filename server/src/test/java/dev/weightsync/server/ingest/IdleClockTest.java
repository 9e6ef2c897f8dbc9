package dev.weightsync.server.ingest;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;

class IdleClockTest {

  @Test
  void theClockRunsOnlyWhileAMessageIsAskedFor() {
    AtomicLong now = new AtomicLong(1_000);
    IdleClock c = new IdleClock(now::get);
    assertThat(c.silentNanos()).as("nothing asked yet").isZero();
    c.requested(2);
    now.addAndGet(50);
    assertThat(c.silentNanos()).isEqualTo(50);
    c.delivered(); // one more still asked for: the silence starts again from now
    now.addAndGet(20);
    assertThat(c.silentNanos()).isEqualTo(20);
    c.delivered(); // nothing asked for: the sidecar is busy with both, not the caller silent
    now.addAndGet(1_000_000);
    assertThat(c.silentNanos()).isZero();
    c.requested(1); // asks again: silence counts from here, not from the last delivery
    now.addAndGet(5);
    assertThat(c.silentNanos()).isEqualTo(5);
  }
}
