package dev.weightsync.server.stage;

import static org.assertj.core.api.Assertions.assertThat;

import dev.weightsync.core.checkpoint.FolderPermissions;
import java.nio.file.Files;
import java.nio.file.Path;
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
    StagingArea area = new StagingArea(root, 2, FolderPermissions.DEFAULT);
    folder("1", 100);
    folder("2.part-0", 200);
    folder("2.part-1", 201);
    folder("3.part-1", 300);
    folder("3.part-0", 302);
    folder("3.part-2", 301);
    area.prune();
    assertThat(left()).containsExactly("2.part-0", "2.part-1", "3.part-0", "3.part-1",
        "3.part-2");

    new StagingArea(root, 1, FolderPermissions.DEFAULT).prune();
    assertThat(left()).containsExactly("3.part-0", "3.part-1", "3.part-2");
  }
}
