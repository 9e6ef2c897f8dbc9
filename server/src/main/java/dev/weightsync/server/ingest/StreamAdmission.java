package dev.weightsync.server.ingest;

import io.grpc.Status;
import io.grpc.StatusException;
import java.util.HashMap;
import java.util.Map;

/**
 * Admits UpdateWeights streams: at most {@code maxStreams} open at once, and at most
 * {@code perCaller} of them from any one caller (see {@link dev.weightsync.server.security.Caller}),
 * so one caller's streams, stalled or not, cannot take every slot and keep another trainer out.
 * A stream is admitted when it starts, before any message is read.
 */
final class StreamAdmission {

  /** An admitted stream's slot; given back once, however the stream ends. */
  final class Slot {
    private final String caller;
    private boolean released;

    private Slot(String caller) {
      this.caller = caller;
    }

    void release() {
      synchronized (StreamAdmission.this) {
        if (released) {
          return;
        }
        released = true;
        total--;
        byCaller.computeIfPresent(caller, (k, n) -> n == 1 ? null : n - 1);
      }
    }
  }

  private final int maxStreams;
  private final int perCaller;
  private final Map<String, Integer> byCaller = new HashMap<>();
  private int total;

  StreamAdmission(int maxStreams, int perCaller) {
    this.maxStreams = maxStreams;
    this.perCaller = perCaller;
  }

  /** A slot for one more stream of {@code caller}, or RESOURCE_EXHAUSTED saying which limit. */
  synchronized Slot admit(String caller) throws StatusException {
    int mine = byCaller.getOrDefault(caller, 0);
    if (mine >= perCaller) {
      throw Status.RESOURCE_EXHAUSTED.withDescription(caller + " has " + mine
          + " UpdateWeights streams open, its share (max-streams-per-caller=" + perCaller
          + "); retry when one ends").asException();
    }
    if (total >= maxStreams) {
      throw Status.RESOURCE_EXHAUSTED.withDescription(maxStreams
          + " UpdateWeights streams are open (max-streams); retry when one ends").asException();
    }
    total++;
    byCaller.merge(caller, 1, Integer::sum);
    return new Slot(caller);
  }

  synchronized int open() {
    return total;
  }
}
