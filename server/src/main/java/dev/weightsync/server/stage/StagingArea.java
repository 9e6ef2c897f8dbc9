package dev.weightsync.server.stage;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.weightsync.core.checkpoint.CheckpointConverter;
import dev.weightsync.core.checkpoint.CheckpointFolder;
import dev.weightsync.core.checkpoint.FolderPermissions;
import dev.weightsync.core.tensor.TensorSpec;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Comparator;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.logging.Logger;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/**
 * The staging folder: versions are assembled under {@code .tmp-*} names and renamed to
 * {@code <version>/} only when complete, so an engine can never be handed a partial folder.
 * Leftover temporary folders (from a crash) are removed on start; only the newest versions are
 * kept, and the shard files of those pruned are deleted or, with {@code staging-reuse}, kept for
 * the next version ({@link ReusableShards}).
 */
public final class StagingArea {

  /** The suffix of a trainer-side sidecar's part folders ({@link #partFolder}). */
  private static final Pattern PART_SUFFIX = Pattern.compile("\\.part-\\d+$");

  private static final Logger LOG = Logger.getLogger(StagingArea.class.getName());
  private static final ObjectMapper JSON = new ObjectMapper();
  static final String TMP_PREFIX = ".tmp-";

  private final Path root;
  private final int keep;
  private final FolderPermissions permissions;
  private final ReusableShards reusable;

  /**
   * @param reuse keep pruned versions' shard files for the next version's (staging-reuse)
   */
  public StagingArea(Path root, int keep, FolderPermissions permissions, boolean reuse)
      throws IOException {
    this.root = root.toAbsolutePath().normalize();
    this.keep = keep;
    this.permissions = permissions;
    try {
      Files.createDirectories(this.root);
      permissions.applyOne(this.root); // the engine must be able to enter it
    } catch (IOException e) {
      String why = e instanceof java.nio.file.AccessDeniedException ? "permission denied"
          : e instanceof java.nio.file.FileSystemException f && f.getReason() != null ? f.getReason()
          : e instanceof java.nio.file.NoSuchFileException ? "cannot create it"
          : String.valueOf(e.getMessage());
      throw new IOException("staging folder " + this.root + " is unusable (" + why
          + "): give --staging-dir a folder this user can create and write", e);
    }
    try (Stream<Path> s = Files.list(this.root)) {
      for (Path p : s.filter(p -> p.getFileName().toString().startsWith(TMP_PREFIX)).toList()) {
        LOG.info(() -> "removing leftover partial staging folder " + p);
        CheckpointConverter.deleteTree(p);
      }
    }
    this.reusable = ReusableShards.open(this.root, reuse);
  }

  public Path root() {
    return root;
  }

  /** The pruned versions' shard files kept for new shards (none without staging-reuse). */
  public ReusableShards reusable() {
    return reusable;
  }

  /** A new temporary folder for one version in progress. */
  public VersionFolder open(String version) throws IOException {
    return new VersionFolder(this, Files.createTempDirectory(root, TMP_PREFIX + version + "-"));
  }

  /**
   * Completes a version: writes the index over the finished shards and {@code config.json},
   * forces everything to disk, then renames the folder into place (replacing an older folder of
   * the same version). Returns the final path.
   */
  Path publish(Path temporary, String version, List<ShardSpool> shards, ObjectNode config)
      throws IOException {
    Map<String, String> weightMap = new TreeMap<>();
    long total = 0;
    for (ShardSpool s : shards) {
      for (TensorSpec t : s.tensors()) {
        weightMap.put(t.name(), s.path().getFileName().toString());
        total += t.byteLength();
      }
    }
    ObjectNode index = JSON.createObjectNode();
    index.putObject("metadata").put("total_size", total);
    ObjectNode map = index.putObject("weight_map");
    weightMap.forEach(map::put);
    Files.write(temporary.resolve(CheckpointFolder.INDEX_FILE),
        JSON.writerWithDefaultPrettyPrinter().writeValueAsBytes(index));
    Files.write(temporary.resolve(CheckpointFolder.CONFIG_FILE),
        JSON.writerWithDefaultPrettyPrinter().writeValueAsBytes(config));
    Path target = root.resolve(version).normalize();
    if (!root.equals(target.getParent()) || version.startsWith(".")) { // ingest refuses these too
      throw new IllegalArgumentException("version '" + version + "' does not name a folder in "
          + root);
    }
    if (Files.exists(target)) { // replaced: it goes as a pruned version does
      discard(List.of(target));
    }
    permissions.applyTree(temporary); // before the rename: readable by the engine from the start
    Files.move(temporary, target, StandardCopyOption.ATOMIC_MOVE);
    return target;
  }

  /** The folder name of one part of a version staged on its own: {@code <version>.part-<i>}. */
  public static String partFolder(String version, int part) {
    return version + ".part-" + part;
  }

  /**
   * Deletes all but the newest {@code keep} published versions. The newest is never deleted
   * (keep is at least 1): it is the complete version an engine left possibly mixed is loaded from.
   */
  public void prune() throws IOException {
    // A trainer-side sidecar stages each part of a version as <version>.part-<i>, and relays them
    // at once: the folders of one version count as one, or a part still being relayed could go.
    Set<String> kept = new HashSet<>();
    List<Path> pruned = new java.util.ArrayList<>();
    for (Path p : published()) {
      String version = PART_SUFFIX.matcher(p.getFileName().toString()).replaceFirst("");
      if (!kept.contains(version) && kept.size() >= keep) {
        pruned.add(p);
      } else {
        kept.add(version);
      }
    }
    discard(pruned);
  }

  /**
   * Takes published folders out of use: each is first renamed to a temporary name, so that no
   * crash can leave a half-emptied folder that looks published (emptying a folder makes it the
   * newest by time), then its shard files are kept for reuse and the rest deleted.
   */
  private void discard(List<Path> published) throws IOException {
    List<Path> retired = new java.util.ArrayList<>();
    try {
      for (Path p : published) {
        Path to = root.resolve(TMP_PREFIX + "retired-" + p.getFileName() + "-" + System.nanoTime());
        Files.move(p, to, StandardCopyOption.ATOMIC_MOVE);
        retired.add(to);
      }
      reusable.keep(retired);
    } finally { // what was not kept goes, now or (after a crash) at the next start
      for (Path p : retired) {
        CheckpointConverter.deleteTree(p);
      }
    }
  }

  /** The newest complete published version (folders under temporary names are not complete). */
  public java.util.Optional<Path> newest() {
    try {
      return published().stream().findFirst();
    } catch (IOException e) {
      return java.util.Optional.empty();
    }
  }

  private List<Path> published() throws IOException {
    try (Stream<Path> s = Files.list(root)) {
      return s.filter(Files::isDirectory)
          .filter(p -> !p.getFileName().toString().startsWith("."))
          .sorted(Comparator.comparing(StagingArea::modified).reversed())
          .toList();
    }
  }

  /** Bytes on disk under the staging folder. */
  public long bytesOnDisk() throws IOException {
    try (Stream<Path> s = Files.walk(root)) {
      return s.filter(Files::isRegularFile).mapToLong(p -> p.toFile().length()).sum();
    }
  }

  private static long modified(Path p) {
    return p.toFile().lastModified();
  }
}
