package dev.weightsync.server.ingest;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

class ByteRangesTest {

  @Test
  void inOrderChunksStayOneInterval() {
    ByteRanges r = new ByteRanges();
    for (long i = 0; i < 120_000; i++) {
      assertThat(r.add(i, 1)).isTrue();
    }
    assertThat(r.intervals()).isEqualTo(1);
    assertThat(r.prefix()).isEqualTo(120_000);
    assertThat(r.total()).isEqualTo(120_000);
  }

  /** Chunks in any order: the intervals held never exceed the gaps, and all end as one. */
  @Test
  void shuffledChunksMergeToOneAndNeverHoldMoreIntervalsThanGaps() {
    List<Long> order = new ArrayList<>();
    for (long i = 0; i < 10_000; i++) {
      order.add(i);
    }
    Collections.shuffle(order, new Random(3));
    ByteRanges r = new ByteRanges();
    boolean[] have = new boolean[10_000];
    for (long i : order) {
      assertThat(r.add(i * 4, 4)).isTrue();
      have[(int) i] = true;
      if (i % 97 == 0) {
        assertThat(r.intervals()).isEqualTo(runs(have));
      }
    }
    assertThat(r.intervals()).isEqualTo(1);
    assertThat(r.prefix()).isEqualTo(40_000);
  }

  @Test
  void overlapsAreRefusedAndRecordNothing() {
    ByteRanges r = new ByteRanges();
    assertThat(r.add(10, 10)).isTrue();
    assertThat(r.add(15, 1)).isFalse();
    assertThat(r.add(5, 6)).isFalse();
    assertThat(r.add(19, 5)).isFalse();
    assertThat(r.add(0, 100)).isFalse();
    assertThat(r.total()).isEqualTo(10);
    assertThat(r.prefix()).as("nothing from 0 yet").isZero();
    assertThat(r.add(0, 10)).as("touching is not overlapping").isTrue();
    assertThat(r.add(20, 0)).as("empty").isTrue();
    assertThat(r.prefix()).isEqualTo(20);
    assertThat(r.intervals()).isEqualTo(1);
  }

  @Test
  void clearForgetsEverything() {
    ByteRanges r = new ByteRanges();
    r.add(0, 4);
    r.add(8, 4);
    assertThat(r.intervals()).isEqualTo(2);
    r.clear();
    assertThat(r.intervals()).isZero();
  }

  private static int runs(boolean[] have) {
    int n = 0;
    for (int i = 0; i < have.length; i++) {
      if (have[i] && (i == 0 || !have[i - 1])) {
        n++;
      }
    }
    return n;
  }
}
