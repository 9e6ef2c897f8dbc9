package dev.weightsync.server.ingest;

import dev.weightsync.proto.v1.Header;
import io.grpc.Status;
import io.grpc.StatusException;
import java.nio.ByteBuffer;
import java.util.List;
import java.util.zip.CRC32;
import java.util.zip.CRC32C;
import java.util.zip.Checksum;

/**
 * The checksum a part's chunks carry in {@code TensorChunk.crc32c}, as its header declares it
 * (docs/wire.md): CRC32C by default; CRC-32 (zlib's, which every Python has at memory speed, where
 * no crc32c module is installed); or none, on a transport that checks integrity itself. Both run
 * as CPU intrinsics here, over the transport's buffers as they are.
 */
enum ChunkChecksum {
  CRC32C, CRC32, OFF;

  /** Header option naming the checksum: crc32c (default), crc32 or off. */
  static final String OPTION = "checksum";
  /** The older option: "crc32c": "off" is "checksum": "off". */
  static final String LEGACY_OPTION = "crc32c";

  static ChunkChecksum of(Header h) throws StatusException {
    String legacy = h.getOptionsOrDefault(LEGACY_OPTION, null);
    String named = h.getOptionsOrDefault(OPTION, null);
    if (legacy != null && !legacy.equals("on") && !legacy.equals("off")) {
      throw invalid("header option " + LEGACY_OPTION + " must be on or off, not '"
          + Refusals.printable(legacy) + "'");
    }
    if (legacy != null && named != null) {
      throw invalid("the header sets both " + OPTION + " and " + LEGACY_OPTION + "; send "
          + OPTION + " alone");
    }
    if (named == null) {
      return "off".equals(legacy) ? OFF : CRC32C;
    }
    return switch (named) {
      case "crc32c" -> CRC32C;
      case "crc32" -> CRC32;
      case "off" -> OFF;
      default -> throw invalid("header option " + OPTION + " must be crc32c, crc32 or off, not '"
          + Refusals.printable(named) + "'");
    };
  }

  /** Whether {@code pieces}, in order, have checksum {@code expected} (always, for OFF). */
  boolean matches(List<ByteBuffer> pieces, int expected) {
    if (this == OFF) {
      return true;
    }
    Checksum c = this == CRC32C ? new CRC32C() : new CRC32();
    for (ByteBuffer p : pieces) {
      c.update(p.duplicate());
    }
    return (int) c.getValue() == expected;
  }

  /** The name callers see in errors. */
  String label() {
    return this == CRC32C ? "CRC32C" : this == CRC32 ? "CRC-32" : "checksum";
  }

  private static StatusException invalid(String message) {
    return Status.INVALID_ARGUMENT.withDescription(message).asException();
  }
}
