package dev.weightsync.server.ingest;

import static dev.weightsync.server.ingest.Refusals.invalid;
import static dev.weightsync.server.ingest.Refusals.printable;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.weightsync.proto.v1.Format;
import dev.weightsync.proto.v1.Header;
import dev.weightsync.server.config.Role;
import io.grpc.Status;
import io.grpc.StatusException;
import java.io.IOException;
import java.util.regex.Pattern;

/**
 * A part's header, validated: which version, part and sub-part (the stream of a part sent over
 * several), whether it carries source weights or a part relayed already quantized, and how its
 * chunks are checksummed.
 *
 * @param relayedConfig a relayed part's quantization_config; null for source weights or a bf16 relay
 */
record PartHeader(String version, int index, int count, int sub, int subCount, boolean relayed,
    ObjectNode relayedConfig, ChunkChecksum checksum) {

  static final int MAX_PARTS = 4096;
  /** A part goes over at most this many streams (a relay uses a few connections per target). */
  static final int MAX_SUB_PARTS = 256;
  /** A version names a staged folder: never "." or "..", nor a hidden (temporary) name. */
  private static final Pattern VERSION = Pattern.compile("[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}");
  private static final ObjectMapper JSON = new ObjectMapper();

  /**
   * @param serverFormat what this sidecar serves (a source part asking for another is refused)
   * @param role this sidecar's role: only an engine-side one takes relayed parts
   */
  static PartHeader validate(Header h, Format serverFormat, Role role) throws StatusException {
    if (!VERSION.matcher(h.getWeightVersion()).matches()) {
      throw invalid("weight_version '" + printable(h.getWeightVersion())
          + "' must be 1-128 characters of A-Z a-z 0-9 . _ - and must not start with '.'");
    }
    // uint32 fields arrive as Java ints: compare unsigned so that 2^31 and above are refused.
    int count = h.getPartCount() == 0 ? 1 : h.getPartCount();
    if (Integer.compareUnsigned(count, MAX_PARTS) > 0) {
      throw invalid("part_count " + Integer.toUnsignedString(count) + " exceeds " + MAX_PARTS);
    }
    if (Integer.compareUnsigned(h.getPartIndex(), count) >= 0) {
      throw invalid("part_index " + Integer.toUnsignedString(h.getPartIndex())
          + " is not below part_count " + count);
    }
    int subCount = h.getSubPartCount() == 0 ? 1 : h.getSubPartCount();
    if (Integer.compareUnsigned(subCount, MAX_SUB_PARTS) > 0) {
      throw invalid("sub_part_count " + Integer.toUnsignedString(subCount) + " exceeds "
          + MAX_SUB_PARTS);
    }
    if (Integer.compareUnsigned(h.getSubPartIndex(), subCount) >= 0) {
      throw invalid("sub_part_index " + Integer.toUnsignedString(h.getSubPartIndex())
          + " is not below sub_part_count " + subCount);
    }
    ChunkChecksum checksum = ChunkChecksum.of(h);
    switch (h.getPayload()) {
      case PAYLOAD_SOURCE -> {
        if (h.getFormat() != Format.FORMAT_UNSPECIFIED && h.getFormat() != serverFormat) {
          throw Status.FAILED_PRECONDITION.withDescription("the header asks for " + h.getFormat()
              + " but this sidecar serves " + serverFormat + " (configured with --format)")
              .asException();
        }
        return new PartHeader(h.getWeightVersion(), h.getPartIndex(), count, h.getSubPartIndex(),
            subCount, false, null, checksum);
      }
      case PAYLOAD_QUANTIZED -> {
        if (role != Role.ENGINE) {
          throw Status.FAILED_PRECONDITION.withDescription("this sidecar (role " + role
              + ") quantizes source weights itself; already-quantized parts go to engine-side"
              + " sidecars (--role engine)").asException();
        }
        return new PartHeader(h.getWeightVersion(), h.getPartIndex(), count, h.getSubPartIndex(),
            subCount, true, parseRelayedConfig(h.getQuantizationConfigJson()), checksum);
      }
      default -> throw invalid("unknown payload kind " + h.getPayloadValue());
    }
  }

  private static ObjectNode parseRelayedConfig(String json) throws StatusException {
    if (json.isEmpty()) {
      return null; // an unquantized (bf16) relay
    }
    try {
      JsonNode n = JSON.readTree(json);
      if (n instanceof ObjectNode o) {
        return o;
      }
    } catch (IOException e) {
      // reported below
    }
    throw invalid("quantization_config_json of a relayed part must be a JSON object");
  }
}
