package dev.weightsync.server.stage;

import static org.assertj.core.api.Assertions.assertThat;

import dev.weightsync.core.checkpoint.FolderPermissions;
import dev.weightsync.core.tensor.DType;
import dev.weightsync.core.tensor.DirectRegion;
import dev.weightsync.core.tensor.PageLocker;
import dev.weightsync.core.tensor.TensorSpec;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Kept shard files page-locked for a device (a stand-in for the GPU's {@code cuMemHostRegister}),
 * the regions a device copies results into directly, and the unlocking before unmapping.
 */
class PageLockedShardsTest {

  private static final int KEPT = 8 << 20;
  private static final int TENSOR = 3 << 20;

  @TempDir
  Path root;

  /** Records what it locks and, at each unlock, whether the kept file was still mapped. */
  private final class Locker implements PageLocker {
    final boolean refuse;
    final CountDownLatch asked = new CountDownLatch(1);
    final List<ByteBuffer> locked = new CopyOnWriteArrayList<>();
    final List<Boolean> mappedAtUnlock = new CopyOnWriteArrayList<>();

    Locker(boolean refuse) {
      this.refuse = refuse;
    }

    @Override
    public Locked lock(ByteBuffer region) {
      try {
        if (refuse) {
          return null;
        }
        locked.add(region);
        return () -> mappedAtUnlock.add(!mappings().isEmpty());
      } finally {
        asked.countDown();
      }
    }

    void awaitAsked() throws InterruptedException {
      assertThat(asked.await(30, TimeUnit.SECONDS)).as("the loader asked for a lock").isTrue();
    }
  }

  /** Lines of this process's mappings that name a file under the staging root. */
  private List<String> mappings() {
    try {
      return Files.readAllLines(Path.of("/proc/self/maps")).stream()
          .filter(l -> l.contains(root.toString())).toList();
    } catch (java.io.IOException e) {
      throw new java.io.UncheckedIOException(e);
    }
  }

  private void version(String name, long modifiedSeconds) throws Exception {
    Path dir = Files.createDirectories(root.resolve(name));
    Files.write(dir.resolve("model.safetensors"), new byte[KEPT]);
    Files.setLastModifiedTime(dir, FileTime.fromMillis(modifiedSeconds * 1000));
  }

  /** An area keeping one version whose pruned version 1 is kept for reuse, locked by {@code l}. */
  private StagingArea keptAndLockedBy(Locker l) throws Exception {
    StagingArea area = new StagingArea(root, 1, FolderPermissions.DEFAULT, true);
    area.reusable().lockPagesWith(l);
    version("1", 100);
    version("2", 200);
    area.prune();
    l.awaitAsked();
    return area;
  }

  /** The next version's shard, taking the kept file over, with tensor {@code w} allocated. */
  private ShardSet nextShard(StagingArea area) throws Exception {
    return nextShard(area, TENSOR);
  }

  private ShardSet nextShard(StagingArea area, int tensorBytes) throws Exception {
    ShardSet set = new ShardSet(Files.createDirectories(root.resolve(".tmp-3")), "model",
        area.reusable());
    set.allocate(List.of(TensorSpec.of("w", DType.U8, tensorBytes)));
    return set;
  }

  private static ByteBuffer pattern(int n, int seed) {
    ByteBuffer b = ByteBuffer.allocateDirect(n);
    for (int i = 0; i < n; i++) {
      b.put(i, (byte) (i * 31 + seed));
    }
    return b;
  }

  private ByteBuffer stagedTensor() throws Exception {
    return stagedTensor(TENSOR);
  }

  private ByteBuffer stagedTensor(int bytes) throws Exception {
    try (FileChannel c = FileChannel.open(root.resolve(".tmp-3/model.safetensors"))) {
      ByteBuffer back = ByteBuffer.allocateDirect(bytes);
      c.read(back, ShardSpool.HEADER_RESERVE);
      return back.flip();
    }
  }

  @Test
  void theDeviceCopiesIntoAKeptFilesLockedPagesWhichAreUnlockedBeforeTheyAreUnmapped()
      throws Exception {
    Locker locker = new Locker(false);
    StagingArea area = keptAndLockedBy(locker);
    assertThat(locker.locked).hasSize(1);
    assertThat(locker.locked.get(0).capacity()).as("the whole kept file").isEqualTo(KEPT);

    ShardSet set = nextShard(area);
    ByteBuffer expected = pattern(TENSOR, 5);
    DirectRegion region = set.direct("w", 1 << 20, TENSOR - (1 << 20));
    assertThat(region).isNotNull();
    assertThat(region.memory().capacity()).isEqualTo(TENSOR - (1 << 20));
    region.memory().put(expected.duplicate().position(1 << 20)); // what the device's copy does
    region.release(true);
    set.write("w", 0, expected.duplicate().limit(1 << 20));
    assertThat(area.reusable().directBytes()).isEqualTo(TENSOR - (1 << 20));

    set.finish();
    assertThat(locker.mappedAtUnlock).containsExactly(true);
    assertThat(mappings()).isEmpty();
    assertThat(stagedTensor()).isEqualTo(expected.clear());
  }

  /** A shard of the kept file's length taking it over, its tensor written through the device. */
  private ShardSet fullLengthShardWritten(StagingArea area, ByteBuffer expected) throws Exception {
    ShardSet set = nextShard(area, expected.capacity());
    DirectRegion region = set.direct("w", 0, expected.capacity());
    region.memory().put(expected.duplicate());
    region.release(true);
    set.finish();
    return set;
  }

  /** The address range of the one mapping of a file whose path ends so. */
  private String rangeOf(String pathEnd) {
    List<String> lines = mappings().stream().filter(l -> l.endsWith(pathEnd)).toList();
    assertThat(lines).hasSize(1);
    return lines.get(0).split(" ")[0];
  }

  private void awaitUntil(java.util.function.BooleanSupplier done) {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
    while (!done.getAsBoolean() && System.nanoTime() < deadline) {
      Thread.onSpinWait();
    }
    assertThat(done.getAsBoolean()).isTrue();
  }

  /**
   * A shard as long as the kept file it took over (a model's shards keep their sizes) keeps the
   * mapping, locked, while its file is staged: when its version is pruned in turn, the file is
   * kept with the same mapping, its pages mapped and locked already, nothing to redo.
   */
  @Test
  void aShardOfTheKeptFilesLengthKeepsItsLockedMappingUntilItIsKeptAgain() throws Exception {
    Locker locker = new Locker(false);
    StagingArea area = keptAndLockedBy(locker);
    ByteBuffer expected = pattern(KEPT - ShardSpool.HEADER_RESERVE, 3);
    fullLengthShardWritten(area, expected).close();
    String range = rangeOf(".tmp-3/model.safetensors");
    assertThat(locker.mappedAtUnlock).as("still locked").isEmpty();
    assertThat(stagedTensor(expected.capacity())).isEqualTo(expected);

    Files.move(root.resolve(".tmp-3"), root.resolve("3")); // published
    Files.setLastModifiedTime(root.resolve("3"), FileTime.fromMillis(300_000));
    area.prune(); // prunes 2: its file is kept, in a mapping of its own, locked by the loader
    awaitUntil(() -> locker.locked.size() == 2);
    version("4", 400);
    area.prune(); // prunes 3: 2's file goes, and 3's is kept with the mapping it had
    assertThat(locker.mappedAtUnlock).as("2's file, unlocked before it went").containsExactly(true);
    assertThat(rangeOf(".reusable/model.safetensors")).isEqualTo(range);
    assertThat(locker.locked).as("nothing locked again").hasSize(2);
  }

  /** A parked mapping goes (unlocked first) when a failed part deletes its file. */
  @Test
  void aParkedMappingGoesWithItsFile() throws Exception {
    Locker locker = new Locker(false);
    StagingArea area = keptAndLockedBy(locker);
    ShardSet set = fullLengthShardWritten(area, pattern(KEPT - ShardSpool.HEADER_RESERVE, 4));
    assertThat(mappings()).isNotEmpty();
    set.delete();
    awaitUntil(() -> mappings().isEmpty());
    assertThat(locker.mappedAtUnlock).containsExactly(true);
  }

  @Test
  void whereThePagesCannotBeLockedNoDirectRegionIsOfferedAndWritesGoInAsBefore()
      throws Exception {
    Locker refusing = new Locker(true);
    StagingArea area = keptAndLockedBy(refusing);
    ShardSet set = nextShard(area);
    assertThat(set.direct("w", 0, TENSOR)).isNull();
    ByteBuffer expected = pattern(TENSOR, 9);
    set.write("w", 0, expected.duplicate());
    set.finish();
    assertThat(stagedTensor()).isEqualTo(expected);
    assertThat(area.reusable().directBytes()).isZero();
  }

  @Test
  void finishingAShardWaitsForTheDirectRegionsStillHeld() throws Exception {
    Locker locker = new Locker(false);
    ShardSet set = nextShard(keptAndLockedBy(locker));
    set.write("w", 0, pattern(1 << 20, 1));
    DirectRegion held = set.direct("w", 1 << 20, TENSOR - (1 << 20));
    held.memory().put(pattern(TENSOR - (1 << 20), 2));

    CompletableFuture<Void> finished = new CompletableFuture<>();
    Thread finisher = new Thread(() -> {
      try {
        set.finish();
        finished.complete(null);
      } catch (Throwable t) {
        finished.completeExceptionally(t);
      }
    });
    finisher.start();
    while (finisher.getState() != Thread.State.WAITING && !finished.isDone()) {
      Thread.onSpinWait(); // until the finisher waits on the mapping's lock
    }
    assertThat(finished).isNotDone();
    assertThat(locker.mappedAtUnlock).as("not unlocked under a device's copy").isEmpty();

    held.release(true);
    finished.get(30, TimeUnit.SECONDS);
    assertThat(locker.mappedAtUnlock).containsExactly(true);
    assertThat(mappings()).isEmpty();
  }

  @Test
  void closingFreesTheKeptFilesUnlockingThemFirst() throws Exception {
    Locker locker = new Locker(false);
    StagingArea area = keptAndLockedBy(locker);
    area.reusable().close();
    assertThat(locker.mappedAtUnlock).containsExactly(true);
    assertThat(mappings()).isEmpty();
    assertThat(area.reusable().bytes()).isZero();
    assertThat(root.resolve(".reusable/model.safetensors")).doesNotExist();
  }
}
