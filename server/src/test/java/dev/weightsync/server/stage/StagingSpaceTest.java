package dev.weightsync.server.stage;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;

/**
 * The ledger against a fake filesystem whose free space the test sets: what a real small tmpfs
 * does in HostileCallersIT, where mounting one is allowed.
 */
class StagingSpaceTest {

  private static final StagingSpace.Spare NO_SPARE = () -> 0;

  /** Free space goes down as the parts "write" (the test moves both counters together). */
  private static final class FakeFs implements StagingSpace.FileSystemSpace {
    final AtomicLong usable;
    final long total;

    FakeFs(long total) {
      this.total = total;
      this.usable = new AtomicLong(total);
    }

    @Override
    public long usable() {
      return usable.get();
    }

    @Override
    public long total() {
      return total;
    }
  }

  @Test
  void reservationsOfOtherPartsCountAgainstTheFreeSpaceUntilWritten() throws Exception {
    FakeFs fs = new FakeFs(100);
    StagingSpace space = new StagingSpace("/staging", fs, 10, NO_SPARE);
    AtomicLong aWritten = new AtomicLong();
    StagingSpace.Reservation a = space.open(aWritten::get);
    StagingSpace.Reservation b = space.open(() -> 0);
    a.take("tensor x", 50);
    // alone, b's 55 bytes would fit in the 100 free; with a's 50 pending they do not
    assertThatThrownBy(() -> b.take("tensor y", 55)).isInstanceOf(StagingSpace.NoRoom.class)
        .hasMessage("/staging has 100 bytes free, of which 50 are reserved by parts being"
            + " received; tensor y needs 55 and staging-reserve keeps 10 free");
    b.take("tensor y", 40);
    assertThat(space.pending()).isEqualTo(90);
    // a writes 30 of its bytes: the filesystem has 30 fewer free, and a 30 fewer pending
    aWritten.set(30);
    fs.usable.addAndGet(-30);
    assertThat(space.pending()).isEqualTo(60);
    assertThatThrownBy(() -> b.take("tensor z", 1)).isInstanceOf(StagingSpace.NoRoom.class);
    a.close(); // committed or discarded: its bytes are on disk, or (discarded) deleted
    fs.usable.addAndGet(30);
    assertThat(space.pending()).isEqualTo(40);
    b.take("tensor z", 50);
  }

  @Test
  void aPartsOwnEarlierReservationsCountToo() throws Exception {
    StagingSpace space = new StagingSpace("/s", new FakeFs(100), 0, NO_SPARE);
    StagingSpace.Reservation r = space.open(() -> 0);
    r.take("a", 60);
    assertThatThrownBy(() -> r.take("b", 60)).isInstanceOf(StagingSpace.NoRoom.class);
  }

  @Test
  void whenOnlyTheReserveStandsInTheWayTheMessageSaysSo() throws Exception {
    StagingSpace space = new StagingSpace("/s", new FakeFs(100), 30, NO_SPARE);
    StagingSpace.Reservation r = space.open(() -> 0);
    assertThatThrownBy(() -> r.take("tensor t", 80)).isInstanceOf(StagingSpace.NoRoom.class)
        .hasMessageContaining("it would fit, but staging-reserve keeps 30 free")
        .hasMessageContaining("the reserve is what refused");
  }

  @Test
  void theDefaultReserveIsTheSmallerOf256MiBAndFivePercent() throws Exception {
    assertThat(new StagingSpace("/s", new FakeFs(100L << 20), -1, NO_SPARE).reserve())
        .as("5% of a 100 MiB filesystem").isEqualTo(5L << 20);
    assertThat(new StagingSpace("/s", new FakeFs(100L << 30), -1, NO_SPARE).reserve())
        .as("capped on a 100 GiB one").isEqualTo(256L << 20);
    assertThat(new StagingSpace("/s", new FakeFs(100L << 30), 7, NO_SPARE).reserve()).isEqualTo(7);
  }

  /** Many threads reserving at once never promise more than there is. */
  @Test
  void concurrentReservationsNeverExceedTheFreeSpace() throws Exception {
    StagingSpace space = new StagingSpace("/s", new FakeFs(1000), 0, NO_SPARE);
    AtomicLong granted = new AtomicLong();
    Thread[] threads = new Thread[8];
    for (int i = 0; i < threads.length; i++) {
      StagingSpace.Reservation r = space.open(() -> 0);
      threads[i] = new Thread(() -> {
        for (int k = 0; k < 100; k++) {
          try {
            r.take("t", 7);
            granted.addAndGet(7);
          } catch (StagingSpace.NoRoom e) {
            // full
          } catch (java.io.IOException e) {
            throw new java.io.UncheckedIOException(e);
          }
        }
      });
      threads[i].start();
    }
    for (Thread t : threads) {
      t.join();
    }
    assertThat(granted.get()).isLessThanOrEqualTo(1000).isGreaterThan(1000 - 7);
    assertThat(space.pending()).isEqualTo(granted.get());
  }

  /** What is held for reuse is freed before a reservation is refused, and only then. */
  @Test
  void spareSpaceIsFreedBeforeARefusal() throws Exception {
    FakeFs fs = new FakeFs(100);
    fs.usable.set(40); // 60 held by files kept for reuse
    AtomicLong releases = new AtomicLong();
    StagingSpace.Spare spare = () -> {
      releases.incrementAndGet();
      long held = 100 - fs.usable.get();
      fs.usable.set(100);
      return held;
    };
    StagingSpace space = new StagingSpace("/s", fs, 0, spare);
    StagingSpace.Reservation r = space.open(() -> 0);
    r.take("a", 30);
    assertThat(releases.get()).as("it fitted without").isZero();
    r.take("b", 50);
    assertThat(releases.get()).isEqualTo(1);
    assertThatThrownBy(() -> r.take("c", 21)).isInstanceOf(StagingSpace.NoRoom.class)
        .hasMessage("/s has 100 bytes free, of which 80 are reserved by parts being received;"
            + " c needs 21 and staging-reserve keeps 0 free");
  }

  /** A part writing into a file taken over needs no room for what falls within that file. */
  @Test
  void bytesWithinWhatAPartAlreadyHasOnDiskNeedNoRoom() throws Exception {
    FakeFs fs = new FakeFs(100);
    fs.usable.set(10); // 90 used, 70 of them by the file this part took over
    StagingSpace space = new StagingSpace("/s", fs, 0, NO_SPARE);
    StagingSpace.Reservation r = space.open(() -> 70);
    r.take("within the file", 60);
    r.take("10 past it", 20);
    assertThat(space.pending()).isEqualTo(10);
    assertThatThrownBy(() -> r.take("one more", 1)).isInstanceOf(StagingSpace.NoRoom.class);
  }
}
