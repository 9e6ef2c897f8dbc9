package dev.weightsync.client;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.stream.IntStream;

/**
 * Splits a version's tensors into parts of about equal bytes, one per parallel stream: largest
 * tensor first into the lightest part, then each part back in the caller's order (so a trainer's
 * layer order is the order each stream sends). Never makes an empty part: the sidecar refuses one.
 */
final class PartSplitter {
  private PartSplitter() {}

  static List<List<Tensor>> split(List<Tensor> tensors, int streams) {
    if (streams < 1) {
      throw new IllegalArgumentException("streams must be at least 1, got " + streams);
    }
    if (tensors.isEmpty()) {
      throw new IllegalArgumentException("a version needs at least one tensor");
    }
    int parts = Math.min(streams, tensors.size());
    long[] load = new long[parts];
    int[] owner = new int[tensors.size()];
    Integer[] bySize = IntStream.range(0, tensors.size()).boxed().toArray(Integer[]::new);
    java.util.Arrays.sort(bySize, Comparator.comparingLong(
        (Integer i) -> tensors.get(i).spec().byteLength()).reversed());
    for (int i : bySize) {
      int lightest = 0;
      for (int p = 1; p < parts; p++) {
        if (load[p] < load[lightest]) {
          lightest = p;
        }
      }
      owner[i] = lightest;
      load[lightest] += Math.max(1, tensors.get(i).spec().byteLength());
    }
    List<List<Tensor>> out = new ArrayList<>();
    for (int p = 0; p < parts; p++) {
      out.add(new ArrayList<>());
    }
    for (int i = 0; i < tensors.size(); i++) {
      out.get(owner[i]).add(tensors.get(i));
    }
    return out;
  }
}
