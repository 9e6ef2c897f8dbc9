package dev.weightsync.server.stage;

import java.io.IOException;
import java.nio.file.FileStore;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.Set;
import java.util.function.LongSupplier;

/**
 * The staging filesystem's space, accounted across every stream: each part reserves the bytes
 * its tensors will take (spool and output) before it writes them, and a reservation is refused
 * when the space free now, less what the other parts have reserved but not yet written, less the
 * reserve, cannot hold it. Without the ledger two streams that each see room for their next
 * tensor both write, and one of them meets "No space left on device" half-way through a file.
 *
 * <p>The accounting is in bytes written, so it is conservative only up to the filesystem's page
 * rounding (a few KiB per file), which the reserve covers. Space held only to be reused (a
 * pruned version's files, {@link ReusableShards}) is given up before a reservation is refused.
 */
public final class StagingSpace {

  /** The reserve when none is configured: the smaller of this and {@link #AUTO_FRACTION}. */
  public static final long AUTO_RESERVE_CAP = 256L << 20;
  public static final double AUTO_FRACTION = 0.05;

  /** What the filesystem says; a fake stands in for it where a small filesystem cannot be made. */
  public interface FileSystemSpace {
    long usable() throws IOException;

    long total() throws IOException;

    static FileSystemSpace of(Path dir) {
      return new FileSystemSpace() {
        @Override
        public long usable() throws IOException {
          return store().getUsableSpace();
        }

        @Override
        public long total() throws IOException {
          return store().getTotalSpace();
        }

        private FileStore store() throws IOException {
          return Files.getFileStore(dir);
        }
      };
    }
  }

  /** Space held for reuse that can be freed at once when a reservation needs it. */
  public interface Spare {
    /** Frees what is held; returns the bytes freed. */
    long release();
  }

  /** Refused: the numbers say by how much, and whether the reserve is what refused. */
  public static final class NoRoom extends Exception {
    NoRoom(String message) {
      super(message);
    }
  }

  private final String where;
  private final FileSystemSpace fs;
  private final long reserve;
  private final Spare spare;
  private final Set<Reservation> open = new HashSet<>();

  /**
   * @param where the staging folder, for messages
   * @param configuredReserve bytes to keep free, or -1 for the default: the smaller of 256 MiB
   *     and 5% of the filesystem
   * @param spare what is freed before a reservation is refused
   */
  public StagingSpace(String where, FileSystemSpace fs, long configuredReserve, Spare spare)
      throws IOException {
    this.where = where;
    this.fs = fs;
    this.spare = spare;
    this.reserve = configuredReserve >= 0 ? configuredReserve
        : Math.min(AUTO_RESERVE_CAP, (long) (fs.total() * AUTO_FRACTION));
  }

  /** Bytes kept free. */
  public long reserve() {
    return reserve;
  }

  /** Bytes reserved by open reservations and not yet written. */
  public synchronized long pending() {
    long sum = 0;
    for (Reservation r : open) {
      sum += r.unwritten();
    }
    return sum;
  }

  /**
   * A new reservation for one part; {@code written} tells how many of its bytes are on the
   * filesystem so far (read from any thread).
   */
  public synchronized Reservation open(LongSupplier written) {
    Reservation r = new Reservation(written);
    open.add(r);
    return r;
  }

  /** One part's share of the ledger. Closed when the part is committed or discarded. */
  public final class Reservation implements AutoCloseable {
    private final LongSupplier written;
    private long reserved;
    private boolean closed;

    private Reservation(LongSupplier written) {
      this.written = written;
    }

    private long unwritten() {
      return Math.max(0, reserved - written.getAsLong());
    }

    /**
     * Reserves {@code bytes} for {@code what} (a tensor), or refuses with the numbers. Bytes that
     * fall within what the part already has on disk (a file taken over for reuse) need no room.
     */
    public void take(String what, long bytes) throws NoRoom, IOException {
      synchronized (StagingSpace.this) {
        if (closed) {
          throw new IllegalStateException("reservation already closed");
        }
        String refused = refusal(what, bytes);
        if (refused != null && spare.release() > 0) {
          refused = refusal(what, bytes); // the filesystem has the freed space back now
        }
        if (refused != null) {
          throw new NoRoom(refused);
        }
        reserved += bytes;
      }
    }

    /** Why {@code bytes} more cannot be reserved now, or null when they can. */
    private String refusal(String what, long bytes) throws IOException {
      long usable = fs.usable();
      long others = 0;
      for (Reservation r : open) {
        others += r.unwritten(); // this part's own earlier tensors too
      }
      long after = Math.max(0, reserved + bytes - written.getAsLong());
      long room = usable - (others - unwritten()) - after; // free once all is written
      if (room >= reserve) {
        return null;
      }
      String numbers = where + " has " + usable + " bytes free, of which " + others
          + " are reserved by parts being received; " + what + " needs " + bytes;
      return room >= 0
          ? numbers + ": it would fit, but staging-reserve keeps " + reserve + " free"
              + " (the reserve is what refused: lower --staging-reserve to use it)"
          : numbers + " and staging-reserve keeps " + reserve + " free";
    }

    /** Gives the reservation back: the part's bytes are now on disk, or deleted. */
    @Override
    public void close() {
      synchronized (StagingSpace.this) {
        closed = true;
        open.remove(this);
      }
    }
  }
}
