package dev.weightsync.server.ingest;

import java.util.Map;
import java.util.TreeMap;

/**
 * The byte ranges of one tensor (or one CUDA bucket) that have arrived, kept as disjoint merged
 * intervals: a range that touches its neighbours joins them, so memory grows with the number of
 * gaps, not with the number of chunks (a million in-order one-byte chunks are one interval).
 *
 * <p>Not thread-safe: one stream's receiver owns it.
 */
final class ByteRanges {

  /** Interval begin to end, never overlapping nor touching. */
  private final TreeMap<Long, Long> intervals = new TreeMap<>();
  private long total;

  /**
   * Records {@code [offset, offset + length)}; returns false, recording nothing, when it overlaps
   * bytes already recorded. An empty range is always accepted and changes nothing.
   */
  boolean add(long offset, long length) {
    if (length == 0) {
      return true;
    }
    long end = offset + length;
    Map.Entry<Long, Long> before = intervals.floorEntry(offset);
    Map.Entry<Long, Long> after = intervals.ceilingEntry(offset);
    if ((before != null && before.getValue() > offset) || (after != null && after.getKey() < end)) {
      return false;
    }
    long begin = offset;
    if (before != null && before.getValue() == offset) {
      begin = before.getKey();
    }
    if (after != null && after.getKey() == end) {
      end = intervals.remove(after.getKey());
    }
    intervals.put(begin, end);
    total += length;
    return true;
  }

  /** Bytes recorded. */
  long total() {
    return total;
  }

  /** Bytes from 0 that have all arrived: also where the first gap begins. */
  long prefix() {
    Map.Entry<Long, Long> first = intervals.firstEntry();
    return first != null && first.getKey() == 0 ? first.getValue() : 0;
  }

  /** Intervals held: the memory this costs is proportional to it. */
  int intervals() {
    return intervals.size();
  }

  /** Forgets every range (the tensor is complete or the part discarded). */
  void clear() {
    intervals.clear();
  }
}
