package dev.weightsync.server.pipeline;

import io.grpc.Status;
import io.grpc.StatusException;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;

/**
 * The streams of one version: which are being received and which committed. A stream is a part,
 * or one sub-part of a part sent over several streams; a part is committed once all its
 * sub-parts are, and every stream of a part must give the same sub-part count. Not thread-safe:
 * {@link VersionCoordinator} guards it.
 */
final class PartSlots {

  /** One stream's place: its part, and which of the part's sub-parts (0 of 1 when not split). */
  record Slot(int part, int sub) implements Comparable<Slot> {
    @Override
    public int compareTo(Slot o) {
      return part != o.part ? Integer.compare(part, o.part) : Integer.compare(sub, o.sub);
    }
  }

  private final int partCount;
  private final Set<Slot> receiving = new HashSet<>();
  private final Map<Slot, PartResult> committed = new TreeMap<>();
  /** Each part's sub-part count, from its first stream. */
  private final Map<Integer, Integer> subCounts = new TreeMap<>();

  /** @param partCount the parts this version is complete with */
  PartSlots(int partCount) {
    this.partCount = partCount;
  }

  /** Takes the slot of a new stream; ABORTED when it conflicts with the streams known. */
  Slot open(String version, int part, int sub, int subCount) throws StatusException {
    Integer known = subCounts.get(part);
    if (known != null && known != subCount) {
      throw Status.ABORTED.withDescription("part " + part + " of version " + version
          + " is sent as " + known + " sub-parts, but this header says " + subCount).asException();
    }
    Slot slot = new Slot(part, sub);
    String which = subCount == 1 ? "part " + part : "sub-part " + sub + " of part " + part;
    if (committed.containsKey(slot)) {
      throw Status.ABORTED.withDescription(which + " of version " + version
          + " was already committed").asException();
    }
    if (!receiving.add(slot)) {
      throw Status.ABORTED.withDescription(which + " of version " + version
          + " is being received on another stream").asException();
    }
    subCounts.put(part, subCount);
    return slot;
  }

  /**
   * The stream of {@code slot} failed: forgotten, so that it can be sent again (and a part none
   * of whose streams is left may come back split another way).
   */
  void forget(Slot slot) {
    receiving.remove(slot);
    boolean idle = receiving.stream().noneMatch(s -> s.part == slot.part)
        && committed.keySet().stream().noneMatch(s -> s.part == slot.part);
    if (idle) {
      subCounts.remove(slot.part);
    }
  }

  /** The stream of {@code slot} ended; with a result, it committed. */
  void ended(Slot slot, PartResult result) {
    receiving.remove(slot);
    if (result != null) {
      committed.put(slot, result);
    }
  }

  /** Every part has given its sub-part count and all of those sub-parts committed. */
  boolean complete() {
    int streams = 0;
    for (int n : subCounts.values()) {
      streams += n;
    }
    return subCounts.size() == partCount && committed.size() == streams;
  }

  /** No stream is being received or committed. */
  boolean empty() {
    return receiving.isEmpty() && committed.isEmpty();
  }

  /** The committed streams' results, in part and sub-part order. */
  List<PartResult> results() {
    return List.copyOf(committed.values());
  }

  /** Parts with a stream being received. */
  Set<Integer> receivingParts() {
    Set<Integer> out = new TreeSet<>();
    receiving.forEach(s -> out.add(s.part));
    return out;
  }

  /** Parts every sub-part of which committed. */
  Set<Integer> committedParts() {
    Set<Integer> out = new TreeSet<>();
    committed.keySet().forEach(s -> out.add(s.part));
    out.removeIf(p -> !partCommitted(p));
    return out;
  }

  /** Parts of 0..partCount-1 not yet committed whole. */
  Set<Integer> missingParts() {
    Set<Integer> out = new TreeSet<>();
    for (int i = 0; i < partCount; i++) {
      if (!partCommitted(i)) {
        out.add(i);
      }
    }
    return out;
  }

  private boolean partCommitted(int part) {
    Integer n = subCounts.get(part);
    return n != null && committed.keySet().stream().filter(s -> s.part == part).count() == n;
  }
}
