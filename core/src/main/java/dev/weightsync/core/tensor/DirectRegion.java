package dev.weightsync.core.tensor;

import java.nio.ByteBuffer;

/**
 * Where a piece of an output tensor lies in a sink's memory, page-locked for the device
 * ({@link PageLocker}), for a device to copy the piece into directly instead of writing it through
 * {@link TensorSink#write}. The memory stays there until {@link #release}; whoever took it
 * releases it exactly once, on the same thread, once the device no longer writes into it.
 */
public interface DirectRegion {

  /** The piece's bytes: a direct buffer, position 0, one byte per byte of the piece. */
  ByteBuffer memory();

  /**
   * Gives the region back. {@code written}: every byte was copied in, and the sink counts the
   * piece as written; otherwise its bytes are undefined and the tensor must not be used (a
   * failed tensor fails its part).
   */
  void release(boolean written);
}
