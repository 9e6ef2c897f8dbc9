package dev.weightsync.core.safetensors;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.weightsync.core.tensor.DType;
import dev.weightsync.core.tensor.TensorSpec;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The JSON header of a safetensors file, parsed and validated strictly: every problem is reported
 * with the file and the tensor it concerns, before any tensor byte is read.
 */
public record SafetensorsHeader(List<SafetensorsEntry> entries, Map<String, String> metadata) {

  /** Larger headers are refused (the reference implementation's limit is 100 MB). */
  public static final long MAX_HEADER_BYTES = 100L << 20;

  static final String METADATA_KEY = "__metadata__";

  private static final ObjectMapper JSON =
      new ObjectMapper().enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION);

  public SafetensorsHeader {
    entries = List.copyOf(entries);
    metadata = Map.copyOf(metadata);
  }

  /**
   * Parses {@code headerBytes} of a file whose data section is {@code dataLength} bytes long.
   * Entries come back in data order.
   */
  public static SafetensorsHeader parse(Path file, byte[] headerBytes, long dataLength)
      throws SafetensorsFormatException {
    JsonNode root;
    try {
      root = JSON.readTree(new String(headerBytes, StandardCharsets.UTF_8));
    } catch (JsonProcessingException e) {
      throw new SafetensorsFormatException(
          file, null, "header is not valid JSON: " + e.getOriginalMessage());
    }
    if (root == null || !root.isObject()) {
      throw new SafetensorsFormatException(file, null, "header is not a JSON object");
    }
    Map<String, String> metadata = new LinkedHashMap<>();
    List<SafetensorsEntry> entries = new ArrayList<>();
    for (Map.Entry<String, JsonNode> field : root.properties()) {
      if (field.getKey().equals(METADATA_KEY)) {
        readMetadata(file, field.getValue(), metadata);
      } else {
        entries.add(readEntry(file, field.getKey(), field.getValue(), dataLength));
      }
    }
    entries.sort(Comparator.comparingLong(SafetensorsEntry::begin));
    long expected = 0;
    for (SafetensorsEntry e : entries) {
      if (e.begin() < expected) {
        throw new SafetensorsFormatException(
            file, e.spec().name(), "data_offsets [" + e.begin() + ", " + e.end()
                + ") overlap the previous tensor, which ends at " + expected);
      }
      if (e.begin() > expected) {
        throw new SafetensorsFormatException(
            file, e.spec().name(), "data_offsets start at " + e.begin()
                + " but the previous tensor ends at " + expected + " (a hole in the data)");
      }
      expected = e.end();
    }
    if (expected != dataLength) {
      throw new SafetensorsFormatException(
          file, null, "tensors cover " + expected + " bytes but the data section holds "
              + dataLength + " bytes");
    }
    return new SafetensorsHeader(entries, metadata);
  }

  private static void readMetadata(Path file, JsonNode node, Map<String, String> out)
      throws SafetensorsFormatException {
    if (!node.isObject()) {
      throw new SafetensorsFormatException(file, null, "__metadata__ is not an object");
    }
    for (Map.Entry<String, JsonNode> kv : node.properties()) {
      if (!kv.getValue().isTextual()) {
        throw new SafetensorsFormatException(
            file, null, "__metadata__ value for '" + kv.getKey() + "' is not a string");
      }
      out.put(kv.getKey(), kv.getValue().asText());
    }
  }

  private static SafetensorsEntry readEntry(Path file, String name, JsonNode node, long dataLength)
      throws SafetensorsFormatException {
    if (!node.isObject()) {
      throw new SafetensorsFormatException(file, name, "entry is not an object");
    }
    JsonNode dtypeNode = node.get("dtype");
    if (dtypeNode == null || !dtypeNode.isTextual()) {
      throw new SafetensorsFormatException(file, name, "missing or non-string 'dtype'");
    }
    DType dtype;
    try {
      dtype = DType.parse(dtypeNode.asText());
    } catch (IllegalArgumentException e) {
      throw new SafetensorsFormatException(file, name, e.getMessage());
    }
    long[] shape = readLongs(file, name, node.get("shape"), "shape", -1);
    long[] offsets = readLongs(file, name, node.get("data_offsets"), "data_offsets", 2);
    long begin = offsets[0];
    long end = offsets[1];
    if (end < begin) {
      throw new SafetensorsFormatException(
          file, name, "data_offsets [" + begin + ", " + end + "] end before they begin");
    }
    if (end > dataLength) {
      throw new SafetensorsFormatException(
          file, name, "data_offsets [" + begin + ", " + end + "] reach past the end of the data ("
              + dataLength + " bytes)");
    }
    TensorSpec spec;
    try {
      spec = new TensorSpec(name, dtype, shape);
    } catch (IllegalArgumentException e) {
      throw new SafetensorsFormatException(file, name, e.getMessage());
    }
    if (spec.byteLength() != end - begin) {
      throw new SafetensorsFormatException(
          file, name, "shape " + java.util.Arrays.toString(shape) + " x " + dtype + " is "
              + spec.byteLength() + " bytes but data_offsets span " + (end - begin) + " bytes");
    }
    return new SafetensorsEntry(spec, begin, end);
  }

  private static long[] readLongs(Path file, String name, JsonNode node, String field, int size)
      throws SafetensorsFormatException {
    if (node == null || !node.isArray() || (size >= 0 && node.size() != size)) {
      throw new SafetensorsFormatException(
          file, name, "'" + field + "' must be an array" + (size >= 0 ? " of " + size : "")
              + " of non-negative integers");
    }
    long[] out = new long[node.size()];
    for (int i = 0; i < out.length; i++) {
      JsonNode v = node.get(i);
      if (!v.isIntegralNumber() || !v.canConvertToLong() || v.asLong() < 0) {
        throw new SafetensorsFormatException(
            file, name, "'" + field + "' holds " + v + ", not a non-negative 64-bit integer");
      }
      out[i] = v.asLong();
    }
    return out;
  }

  /** Serializes a header for {@code entries} (in data order), padded with spaces to 8 bytes. */
  public static byte[] serialize(List<SafetensorsEntry> entries, Map<String, String> metadata) {
    ObjectNode root = JSON.createObjectNode();
    if (!metadata.isEmpty()) {
      ObjectNode meta = root.putObject(METADATA_KEY);
      metadata.forEach(meta::put);
    }
    for (SafetensorsEntry e : entries) {
      ObjectNode t = root.putObject(e.spec().name());
      t.put("dtype", e.spec().dtype().name());
      var shape = t.putArray("shape");
      for (long d : e.spec().shape()) {
        shape.add(d);
      }
      t.putArray("data_offsets").add(e.begin()).add(e.end());
    }
    byte[] json;
    try {
      json = JSON.writeValueAsBytes(root);
    } catch (JsonProcessingException e) {
      throw new IllegalStateException(e);
    }
    int padded = (json.length + 7) & ~7;
    byte[] out = java.util.Arrays.copyOf(json, padded);
    java.util.Arrays.fill(out, json.length, padded, (byte) ' ');
    return out;
  }
}
