package dev.weightsync.core.tensor;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * Read access to one tensor's bytes, in windows, so that tensors larger than 2 GiB (and larger
 * than the heap) can be processed band by band.
 *
 * <p>Implementations must be safe to call from several threads at once.
 */
public interface TensorSource {

  /**
   * A little-endian, read-only view of {@code length} bytes starting at {@code offset} within the
   * tensor.
   */
  ByteBuffer window(long offset, int length) throws IOException;

  /** A source over bytes already in memory (read as little-endian). */
  static TensorSource of(ByteBuffer bytes) {
    ByteBuffer whole = bytes.asReadOnlyBuffer();
    return (offset, length) ->
        whole.slice(Math.toIntExact(offset), length).order(ByteOrder.LITTLE_ENDIAN);
  }
}
