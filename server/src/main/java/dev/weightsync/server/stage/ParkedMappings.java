package dev.weightsync.server.stage;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Map;
import java.util.Set;
import java.util.logging.Logger;
import java.util.stream.Stream;

/**
 * The mappings of finished shards ({@code staging-reuse}), kept, page locks and all, while their
 * files are staged, so that a pruned version's files are kept with their page tables filled and
 * pages locked already ({@link ReusableShards#keep}): nothing to unmap, map, load or lock between
 * versions. They are found again by file key (device and inode), which stays with a file through
 * the renames of publishing and pruning and cannot pass to another file while the mapping holds
 * the file open. Once a file is no longer staged (a dropped version, a failed part, a file deleted
 * by another process), {@link #sweep} unmaps its mapping.
 *
 * <p>Thread-safe.
 */
final class ParkedMappings {

  private static final Logger LOG = Logger.getLogger(ParkedMappings.class.getName());

  /** The staging root, whose version and part folders hold the staged files. */
  private final Path root;
  /** The folder of kept files under the root, whose files are not staged. */
  private final Path kept;
  private final Map<Object, WarmMapping> byFile = new HashMap<>();

  ParkedMappings(Path root, Path kept) {
    this.root = root;
    this.kept = kept;
  }

  /**
   * Parks {@code m}, whose file has a key ({@link WarmMapping#fileKey}); returns the mapping
   * parked for that file before, if any, for the caller to unmap.
   */
  synchronized WarmMapping park(WarmMapping m) {
    return byFile.put(m.fileKey(), m);
  }

  /** Takes the mapping parked for {@code file} out, or null when there is none. */
  synchronized WarmMapping take(Path file) {
    Object key = fileKey(file);
    return key == null ? null : byFile.remove(key);
  }

  /**
   * Unmaps the mappings of files no longer staged, at once, so that their pages go back with the
   * files: staged are the shard files that a version or part folder under the root holds now.
   */
  synchronized void sweep() {
    if (byFile.isEmpty()) {
      return;
    }
    Set<Object> staged = new HashSet<>();
    try (Stream<Path> folders = Files.list(root)) {
      for (Path f : folders.filter(p -> !p.equals(kept) && Files.isDirectory(p)).toList()) {
        try (Stream<Path> files = Files.list(f)) {
          files.filter(ReusableShards::isShard).forEach(p -> staged.add(fileKey(p)));
        } catch (IOException | UncheckedIOException e) {
          // the folder went meanwhile: its files are not staged
        }
      }
    } catch (IOException | UncheckedIOException e) {
      LOG.warning("could not list " + root + " to free the mappings of files gone: "
          + e.getMessage());
      return;
    }
    byFile.values().removeIf(m -> {
      boolean gone = !staged.contains(m.fileKey());
      if (gone) {
        m.unmap(); // quick: a parked mapping has no copies in flight
      }
      return gone;
    });
  }

  /** Unmaps every parked mapping; for shutdown. */
  synchronized void unmapAll() {
    byFile.values().forEach(WarmMapping::unmap);
    byFile.clear();
  }

  /** The file's identity (device and inode), or null when it cannot be read. */
  private static Object fileKey(Path p) {
    try {
      return Files.readAttributes(p, BasicFileAttributes.class).fileKey();
    } catch (IOException e) {
      return null;
    }
  }
}
