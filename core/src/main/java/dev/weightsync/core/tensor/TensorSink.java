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
}
