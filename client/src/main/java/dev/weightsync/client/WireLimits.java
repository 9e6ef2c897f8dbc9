package dev.weightsync.client;

/**
 * The sizes the UpdateWeights protocol is built around, for both ends (docs/wire.md): a chunk's
 * data is at most {@link #MAX_CHUNK_BYTES}, and a message at most {@link #MAX_MESSAGE_BYTES}, which
 * leaves a full chunk room for its name, shape and other fields.
 */
public final class WireLimits {

  /** The most data one chunk may carry; also the clients' default chunk size. */
  public static final int MAX_CHUNK_BYTES = 4 << 20;

  /** The largest message either side accepts (gRPC's maxInboundMessageSize). */
  public static final int MAX_MESSAGE_BYTES = 8 << 20;

  private WireLimits() {
  }
}
