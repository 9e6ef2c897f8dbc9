package dev.weightsync.server.stage;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.weightsync.core.checkpoint.CheckpointConverter;
import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.logging.Logger;

/**
 * The temporary folder of one version in progress, and the one thing that ends it: it is either
 * published (renamed into place) or deleted, never both, and never while a part still writes into
 * it. A version dropped while a stream is still writing its part (a timeout, say) is deleted when
 * that last writer closes, so a deletion never races a file being created.
 *
 * <p>Thread-safe.
 */
public final class VersionFolder {

  private static final Logger LOG = Logger.getLogger(VersionFolder.class.getName());

  private final StagingArea area;
  private final Path path;
  private int writers;
  private boolean dropped;
  private boolean ended;

  VersionFolder(StagingArea area, Path path) {
    this.area = area;
    this.path = path;
  }

  public Path path() {
    return path;
  }

  /**
   * A new set of staged shards {@code base*.safetensors} in this folder, written into a pruned
   * version's files of the same names where the staging area kept them.
   */
  public ShardSet shardSet(String base) throws IOException {
    return new ShardSet(path, base, area.reusable());
  }

  /** A part begins writing here; refused once the folder was dropped or published. */
  public synchronized void addWriter() throws IOException {
    if (dropped || ended) {
      throw new IOException(path + " was already " + (dropped ? "dropped" : "published"));
    }
    writers++;
  }

  /** A part stopped writing here (committed or failed): a dropped folder may go now. */
  public void removeWriter() {
    boolean delete;
    synchronized (this) {
      writers--;
      delete = dropped && writers == 0 && !ended;
      ended |= delete;
    }
    if (delete) {
      delete();
    }
  }

  /**
   * The version will not be published: delete the folder now, or when its last writer closes.
   * Nothing once it was published.
   */
  public void drop() {
    boolean delete;
    synchronized (this) {
      dropped = true;
      delete = writers == 0 && !ended;
      ended |= delete;
    }
    if (delete) {
      delete();
    }
  }

  /**
   * Completes the version (see {@link StagingArea#publish}); every writer must have closed.
   * Returns the published folder. When it fails, what was written is deleted.
   */
  public Path publish(String version, List<ShardSpool> shards, ObjectNode config)
      throws IOException {
    synchronized (this) {
      if (writers != 0 || ended) {
        throw new IllegalStateException(path + ": published with " + writers
            + " writer(s) open" + (ended ? ", after it ended" : ""));
      }
      ended = true;
    }
    try {
      return area.publish(path, version, shards, config);
    } catch (IOException | RuntimeException e) {
      delete();
      throw e;
    }
  }

  private void delete() {
    try {
      CheckpointConverter.deleteTree(path);
    } catch (IOException e) {
      LOG.warning("could not delete " + path + ": " + e.getMessage());
    }
    area.reusable().sweep(); // its finished shards' mappings, parked, go with the files
  }
}
