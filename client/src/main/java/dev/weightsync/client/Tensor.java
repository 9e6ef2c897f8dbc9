package dev.weightsync.client;

import dev.weightsync.core.tensor.TensorSource;
import dev.weightsync.core.tensor.TensorSpec;
import java.nio.ByteBuffer;

/** A named tensor to send: its spec and where its little-endian bytes come from. */
public record Tensor(TensorSpec spec, TensorSource source) {

  public static Tensor of(TensorSpec spec, ByteBuffer bytes) {
    if (bytes.remaining() != spec.byteLength()) {
      throw new IllegalArgumentException("tensor " + spec.name() + ": " + bytes.remaining()
          + " bytes given, " + spec.byteLength() + " expected for " + spec);
    }
    return new Tensor(spec, TensorSource.of(bytes));
  }
}
