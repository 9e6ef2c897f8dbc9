package dev.weightsync.server.ingest;

import java.util.function.LongSupplier;

/**
 * How long a caller has been silent while the sidecar was asking it for more. The clock runs only
 * while a message has been requested and not yet delivered: a stream whose messages wait because
 * the sidecar is busy (a slow quantizer, a full GPU) is not the caller's silence, and must not be
 * timed out as if it were. Thread-safe: gRPC's threads deliver, the stream's executor requests.
 */
final class IdleClock {

  private final LongSupplier nanoTime;
  /** Messages requested from the transport and not yet delivered. */
  private int outstanding;
  /** When the current silence began: the last delivery, or the request that ended a pause. */
  private long since;

  IdleClock(LongSupplier nanoTime) {
    this.nanoTime = nanoTime;
    this.since = nanoTime.getAsLong();
  }

  /** The sidecar asked for {@code n} more messages. */
  synchronized void requested(int n) {
    if (outstanding == 0) {
      since = nanoTime.getAsLong();
    }
    outstanding += n;
  }

  /** A message arrived. */
  synchronized void delivered() {
    outstanding = Math.max(0, outstanding - 1);
    since = nanoTime.getAsLong();
  }

  /** Nanoseconds of silence now: 0 while nothing is requested. */
  synchronized long silentNanos() {
    return outstanding == 0 ? 0 : nanoTime.getAsLong() - since;
  }
}
