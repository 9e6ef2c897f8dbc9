package dev.weightsync.core.tensor;

import java.nio.ByteBuffer;

/**
 * Page-locks host memory for a device, so that the device can copy into it directly (DMA) rather
 * than through its own page-locked buffers and a second copy on the host. The GPU quantizer is
 * one; the staging area asks it to lock the shard files it keeps mapped for the next version.
 */
public interface PageLocker {

  /** No device: nothing is locked. */
  PageLocker NONE = region -> null;

  /**
   * Page-locks the whole of {@code region} (a direct buffer, such as a mapping); null when it
   * cannot, which is not an error (the device then copies through its own buffers). The caller
   * unlocks it before the memory goes (before unmapping a mapping).
   */
  Locked lock(ByteBuffer region);

  /** A region locked by {@link #lock}. */
  interface Locked {

    /** Unlocks the region; a failure here is reported by the locker, not thrown. */
    void unlock();
  }
}
