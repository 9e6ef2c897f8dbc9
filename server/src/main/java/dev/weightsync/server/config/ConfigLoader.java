package dev.weightsync.server.config;

import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.exc.UnrecognizedPropertyException;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import com.fasterxml.jackson.databind.module.SimpleModule;
import com.fasterxml.jackson.databind.JsonDeserializer;
import com.fasterxml.jackson.core.JsonParser;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Iterator;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Builds a {@link SidecarConfig}: the documented defaults, then the file ({@code --config}), then
 * {@code WEIGHTSYNC_<KEY>} environment variables (e.g. {@code WEIGHTSYNC_STAGING_DIR}), then flags.
 * Unknown keys are errors. Durations read as {@code 300s}, {@code 5m}, {@code 250ms} or ISO-8601.
 */
public final class ConfigLoader {
  private ConfigLoader() {}

  /** Every key with its default (documented in the README). */
  public static final String DEFAULTS = """
      port: 50051
      listen: []
      metrics-port: 9464
      format: null
      group-size: null
      quantization-config: null
      staging-dir: /dev/shm/weightsync
      sglang-url: []
      sglang-admin-key: null
      sglang-admin-key-file: null
      part-timeout: 300s
      keep-versions: 2
      threads: 0
      pause-mode: abort
      resume-after-failed-load: false
      engine-timeout: 600s
      engine-retries: 2
      engine-backoff: 200ms
      max-open-tensors: 4
      shutdown-grace: 30s
      device: auto
      gpu-failure: cpu
      gpu-slots: 4
      auth-token-file: null
      role: both
      relay-to: []
      relay-token-file: null
      policy: all
      quorum: 0.5
      tls-cert: null
      tls-key: null
      tls-client-ca: null
      tls-reload: 60s
      relay-tls-ca: null
      relay-tls-cert: null
      relay-tls-key: null
      max-tensor-bytes: 64GiB
      max-version-bytes: 4TiB
      max-tensors: 1000000
      max-streams: 256
      max-streams-per-caller: 64
      header-timeout: 30s
      staging-reserve: auto
      insecure: false
      staging-mode: "0750"
      staging-group: null
      """;

  /** Keys that may be given several times and form a list. */
  private static final List<String> LIST_KEYS = List.of("sglang-url", "relay-to", "listen");

  private static final ObjectMapper YAML = new ObjectMapper(new YAMLFactory())
      .enable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES)
      .registerModule(new SimpleModule().addDeserializer(Duration.class, new JsonDeserializer<>() {
        @Override
        public Duration deserialize(JsonParser p, com.fasterxml.jackson.databind.DeserializationContext c)
            throws IOException {
          return parseDuration(p.getValueAsString());
        }
      }).addDeserializer(Long.TYPE, new JsonDeserializer<>() {
        @Override
        public Long deserialize(JsonParser p, com.fasterxml.jackson.databind.DeserializationContext c)
            throws IOException {
          String v = p.getValueAsString();
          return "auto".equalsIgnoreCase(v.trim()) ? -1 : parseBytes(v); // staging-reserve
        }
      }));

  /**
   * @param file the config file or null
   * @param env environment variables (System.getenv() in production)
   * @param flags flag values by key; list keys take a List of strings
   */
  public static SidecarConfig load(Path file, Map<String, String> env, Map<String, Object> flags)
      throws IOException {
    ObjectNode node = (ObjectNode) YAML.readTree(DEFAULTS);
    Map<String, String> origin = new java.util.HashMap<>(); // key -> where its value came from
    if (file != null) {
      JsonNode fromFile;
      try {
        fromFile = YAML.readTree(Files.readString(file));
      } catch (IOException e) {
        throw new IOException(file + ": cannot read config: " + e.getMessage(), e);
      }
      if (fromFile != null && !fromFile.isNull()) {
        if (!fromFile.isObject()) {
          throw new IllegalArgumentException(file + ": the config must be a mapping of keys to values");
        }
        merge(node, (ObjectNode) fromFile, file.toString());
        fromFile.fieldNames().forEachRemaining(k -> origin.put(k, "in " + file));
      }
    }
    ObjectNode fromEnv = YAML.createObjectNode();
    for (Iterator<String> it = node.fieldNames(); it.hasNext(); ) {
      String key = it.next();
      String value = env.get("WEIGHTSYNC_" + key.toUpperCase(Locale.ROOT).replace('-', '_'));
      if (value != null) {
        origin.put(key, "from " + "WEIGHTSYNC_" + key.toUpperCase(Locale.ROOT).replace('-', '_')
            + "=" + value);
        if (LIST_KEYS.contains(key)) {
          ArrayNode a = fromEnv.putArray(key);
          for (String v : value.split(",")) {
            if (!v.isBlank()) {
              a.add(v.trim());
            }
          }
        } else {
          fromEnv.put(key, value);
        }
      }
    }
    merge(node, fromEnv, "environment");
    merge(node, YAML.valueToTree(flags), "flags");
    flags.keySet().forEach(k -> origin.put(k, "from --" + k));
    try {
      return YAML.treeToValue(node, SidecarConfig.class);
    } catch (UnrecognizedPropertyException e) {
      throw new IllegalArgumentException("unknown config key '" + e.getPropertyName() + "'");
    } catch (com.fasterxml.jackson.databind.JsonMappingException e) {
      String key = e.getPath().isEmpty() ? null : e.getPath().get(0).getFieldName();
      Throwable cause = e.getCause() != null ? e.getCause() : e;
      String why = cause == e ? e.getOriginalMessage() : cause.getMessage();
      throw new IllegalArgumentException("invalid value for " + (key == null ? "the configuration"
          : key + " (" + origin.getOrDefault(key, "default") + ")") + ": "
          + why.lines().findFirst().orElse(why), e);
    } catch (IOException e) {
      Throwable cause = e.getCause() != null ? e.getCause() : e;
      throw new IllegalArgumentException("invalid configuration: " + cause.getMessage(), e);
    }
  }

  private static void merge(ObjectNode into, ObjectNode from, String source) {
    for (Map.Entry<String, JsonNode> kv : from.properties()) {
      if (!into.has(kv.getKey())) {
        throw new IllegalArgumentException(source + ": unknown config key '" + kv.getKey()
            + "' (known: " + String.join(", ", iterable(into.fieldNames())) + ")");
      }
      JsonNode v = kv.getValue();
      if (LIST_KEYS.contains(kv.getKey()) && v.isTextual()) {
        v = YAML.createArrayNode().add(v.asText());
      }
      into.set(kv.getKey(), v);
    }
  }

  private static List<String> iterable(Iterator<String> it) {
    List<String> out = new java.util.ArrayList<>();
    it.forEachRemaining(out::add);
    return out;
  }

  /** A byte count: {@code 1048576}, or with a unit: {@code 512MiB}, {@code 64GiB}, {@code 4TiB}, {@code 10GB}. */
  public static long parseBytes(String text) {
    String t = text.trim();
    String[][] units = {{"KiB", "1024"}, {"MiB", "1048576"}, {"GiB", "1073741824"},
        {"TiB", "1099511627776"}, {"KB", "1000"}, {"MB", "1000000"}, {"GB", "1000000000"},
        {"TB", "1000000000000"}, {"B", "1"}};
    try {
      for (String[] u : units) {
        if (t.endsWith(u[0])) {
          return Math.multiplyExact(Long.parseLong(t.substring(0, t.length() - u[0].length()).trim()),
              Long.parseLong(u[1]));
        }
      }
      return Long.parseLong(t);
    } catch (RuntimeException e) {
      throw new IllegalArgumentException("not a byte count: '" + text + "' (e.g. 64GiB, 512MiB, 1048576)");
    }
  }

  /** {@code 250ms}, {@code 30s}, {@code 5m}, {@code 1h}, a number of seconds, or ISO-8601. */
  public static Duration parseDuration(String text) {
    String t = text.trim().toLowerCase(Locale.ROOT);
    try {
      if (t.endsWith("ms")) {
        return Duration.ofMillis(Long.parseLong(t.substring(0, t.length() - 2).trim()));
      }
      if (t.endsWith("s")) {
        return Duration.ofMillis((long) (Double.parseDouble(t.substring(0, t.length() - 1)) * 1000));
      }
      if (t.endsWith("m")) {
        return Duration.ofSeconds(Long.parseLong(t.substring(0, t.length() - 1)) * 60);
      }
      if (t.endsWith("h")) {
        return Duration.ofHours(Long.parseLong(t.substring(0, t.length() - 1)));
      }
      if (t.startsWith("p")) {
        return Duration.parse(text.trim().toUpperCase(Locale.ROOT));
      }
      return Duration.ofMillis((long) (Double.parseDouble(t) * 1000));
    } catch (RuntimeException e) {
      throw new IllegalArgumentException("not a duration: '" + text + "' (e.g. 300s, 5m, 250ms)");
    }
  }
}
