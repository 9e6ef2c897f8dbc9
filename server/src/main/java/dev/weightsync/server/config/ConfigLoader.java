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

  /** Every key with its default ({@link ConfigSchema}); lists empty, keys without one null. */
  static ObjectNode defaults() {
    ObjectNode node = YAML.createObjectNode();
    for (ConfigSchema.Key k : ConfigSchema.KEYS) {
      if (k.kind() == ConfigSchema.Kind.LIST) {
        node.putArray(k.name());
      } else if (k.defaultValue() == null) {
        node.putNull(k.name());
      } else {
        node.put(k.name(), k.defaultValue()); // read as the environment's text is
      }
    }
    return node;
  }

  private static boolean isList(String key) {
    ConfigSchema.Key k = ConfigSchema.get(key);
    return k != null && k.kind() == ConfigSchema.Kind.LIST;
  }

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
    ObjectNode node = defaults();
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
        if (isList(key)) {
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
      if (isList(kv.getKey()) && v.isTextual()) {
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
