package dev.weightsync.core.tensor;

import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * Where output tensors' bytes go, piece by piece. Pieces of one tensor may arrive in any order and
 * from several threads at once; each byte is written exactly once.
 */
public interface TensorSink {

  /** Writes the remaining bytes of {@code data} at {@code offset} within tensor {@code name}. */
  void write(String name, long offset, ByteBuffer data) throws IOException;

  /**
   * The memory that {@code length} bytes at {@code offset} of tensor {@code name} will occupy,
   * when the sink has it mapped and page-locked for a device to copy into directly; null
   * otherwise (write the bytes instead), which is all this default offers.
   */
  default DirectRegion direct(String name, long offset, long length) {
    return null;
  }
}
