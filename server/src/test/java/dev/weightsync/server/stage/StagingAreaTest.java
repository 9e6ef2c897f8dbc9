package dev.weightsync.server.stage;

import static org.assertj.core.api.Assertions.assertThat;

import dev.weightsync.core.checkpoint.FolderPermissions;
import dev.weightsync.core.tensor.DType;
import dev.weightsync.core.tensor.TensorSpec;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.BasicFileAttributes;
import java.nio.file.attribute.FileTime;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class StagingAreaTest {

  @TempDir
  Path root;

  private void folder(String name, long modifiedSeconds) throws Exception {
    Path p = Files.createDirectories(root.resolve(name));
    Files.setLastModifiedTime(p, FileTime.fromMillis(modifiedSeconds * 1000));
  }

  private List<String> left() throws Exception {
    try (Stream<Path> s = Files.list(root)) {
      return s.map(p -> p.getFileName().toString()).sorted().toList();
    }
  }

  @Test
  void pruneKeepsTheNewestVersionsAndCountsAVersionsPartFoldersAsOne() throws Exception {
    StagingArea area = new StagingArea(root, 2, FolderPermissions.DEFAULT, false);
    folder("1", 100);
    folder("2.part-0", 200);
    folder("2.part-1", 201);
    folder("3.part-1", 300);
    folder("3.part-0", 302);
    folder("3.part-2", 301);
    area.prune();
    assertThat(left()).containsExactly("2.part-0", "2.part-1", "3.part-0", "3.part-1",
        "3.part-2");

    new StagingArea(root, 1, FolderPermissions.DEFAULT, false).prune();
    assertThat(left()).containsExactly("3.part-0", "3.part-1", "3.part-2");
  }

  /** A published version with one shard {@code model.safetensors} of {@code bytes} bytes. */
  private Path version(String name, long modifiedSeconds, int bytes) throws Exception {
    folder(name, modifiedSeconds);
    Path shard = root.resolve(name).resolve("model.safetensors");
    Files.write(shard, new byte[bytes]);
    Files.writeString(root.resolve(name).resolve("config.json"), "{}");
    Files.setLastModifiedTime(root.resolve(name), FileTime.fromMillis(modifiedSeconds * 1000));
    return shard;
  }

  private static Object inode(Path p) throws Exception {
    return Files.readAttributes(p, BasicFileAttributes.class).fileKey();
  }

  /**
   * With reuse, a pruned version's shard becomes the file of the next shard of its name (the same
   * inode), and its folder still goes; files not taken by the next prune are deleted then.
   */
  @Test
  void prunedShardsAreTakenOverByTheNextShardOfTheirName() throws Exception {
    StagingArea area = new StagingArea(root, 1, FolderPermissions.DEFAULT, true);
    Object first = inode(version("1", 100, 4096));
    version("2", 200, 1000);
    area.prune();
    assertThat(left()).containsExactly(".reusable", "2");
    assertThat(area.reusable().bytes()).isEqualTo(4096);

    Path next = root.resolve(".tmp-3").resolve("model.safetensors");
    Files.createDirectories(next.getParent());
    ShardSpool spool = new ShardSpool(next, area.reusable());
    assertThat(inode(next)).isEqualTo(first);
    assertThat(spool.takenOverBytes()).isEqualTo(4096);
    assertThat(area.reusable().bytes()).isZero();
    spool.close();
    assertThat(new ShardSpool(root.resolve(".tmp-3").resolve("other.safetensors"),
        area.reusable()).takenOverBytes()).as("no kept file of that name").isZero();

    version("4", 400, 10);
    area.prune(); // prunes 2: its file is kept
    Files.setLastModifiedTime(root.resolve("4"), FileTime.fromMillis(400_000));
    version("5", 500, 10);
    area.prune(); // prunes 4: 2's file, not taken, goes
    assertThat(area.reusable().bytes()).isEqualTo(10);
    assertThat(Files.size(root.resolve(".reusable/model.safetensors"))).isEqualTo(10);
  }

  /** An area keeping one version, after versions 1 and 2 (64-byte shards) and a prune. */
  private StagingArea prunedAfterTwoVersions(boolean reuse) throws Exception {
    StagingArea area = new StagingArea(root, 1, FolderPermissions.DEFAULT, reuse);
    version("1", 100, 64);
    version("2", 200, 64);
    area.prune();
    return area;
  }

  @Test
  void aRestartKeepsNoFilesForReuseWhetherReuseIsOnOrOff() throws Exception {
    assertThat(prunedAfterTwoVersions(true).reusable().bytes()).isEqualTo(64);
    assertThat(new StagingArea(root, 1, FolderPermissions.DEFAULT, true).reusable().bytes())
        .isZero();
    assertThat(left()).containsExactly(".reusable", "2");
    new StagingArea(root, 1, FolderPermissions.DEFAULT, false);
    assertThat(left()).containsExactly("2");
  }

  @Test
  void withoutReusePrunedVersionsAreDeletedWhole() throws Exception {
    StagingArea area = prunedAfterTwoVersions(false);
    assertThat(left()).containsExactly("2");
    assertThat(area.reusable().bytes()).isZero();
  }

  /** Lines of this process's mappings that name a file under the staging root. */
  private List<String> mappingsUnderRoot() throws Exception {
    return Files.readAllLines(Path.of("/proc/self/maps")).stream()
        .filter(l -> l.contains(root.toString())).toList();
  }

  /**
   * A kept file is mapped while it waits; the shard that takes it over writes large regions
   * through that mapping, unmaps it when finished and is cut to its own length; files freed
   * for space are unmapped too, so nothing of the staging folder stays mapped.
   */
  @Test
  void keptFilesAreMappedUntilTheirShardIsFinishedOrTheyAreFreed() throws Exception {
    StagingArea area = new StagingArea(root, 1, FolderPermissions.DEFAULT, true);
    version("1", 100, 8 << 20);
    version("2", 200, 8 << 20);
    area.prune();
    assertThat(mappingsUnderRoot()).anyMatch(l -> l.endsWith(".reusable/model.safetensors"));

    Path next = Files.createDirectories(root.resolve(".tmp-3")).resolve("model.safetensors");
    ShardSpool spool = new ShardSpool(next, area.reusable());
    TensorSpec big = TensorSpec.of("w", DType.U8, 3 << 20);
    spool.allocate(List.of(big));
    ByteBuffer data = ByteBuffer.allocateDirect(3 << 20);
    for (int i = 0; i < data.capacity(); i++) {
      data.put(i, (byte) (i * 7 + 1));
    }
    spool.write("w", 0, data.duplicate());
    assertThat(mappingsUnderRoot()).as("the kept mapping moved with its file")
        .anyMatch(l -> l.endsWith(".tmp-3/model.safetensors"));
    spool.finish();
    assertThat(mappingsUnderRoot()).isEmpty();
    assertThat(Files.size(next)).isEqualTo(ShardSpool.HEADER_RESERVE + (3 << 20));
    try (FileChannel c = FileChannel.open(next)) {
      ByteBuffer back = ByteBuffer.allocate(3 << 20);
      c.read(back, ShardSpool.HEADER_RESERVE);
      assertThat(back.flip()).isEqualTo(data.duplicate().clear());
    }

    version("4", 400, 4 << 20);
    area.prune(); // keeps 2's file, mapped
    assertThat(mappingsUnderRoot()).isNotEmpty();
    assertThat(area.reusable().release()).isEqualTo(8 << 20);
    assertThat(mappingsUnderRoot()).isEmpty();
    assertThat(left()).containsExactly(".reusable", ".tmp-3", "4");
  }
}
