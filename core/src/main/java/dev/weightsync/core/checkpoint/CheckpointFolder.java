package dev.weightsync.core.checkpoint;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.weightsync.core.safetensors.SafetensorsFile;
import dev.weightsync.core.tensor.TensorSource;
import dev.weightsync.core.tensor.TensorSpec;
import java.io.Closeable;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

/**
 * A Hugging Face checkpoint folder opened for reading: the shards named by
 * {@code model.safetensors.index.json}, or every {@code *.safetensors} file when there is no index.
 */
public final class CheckpointFolder implements Closeable {

  public static final String INDEX_FILE = "model.safetensors.index.json";
  public static final String CONFIG_FILE = "config.json";
  static final ObjectMapper JSON = new ObjectMapper();

  private final Path dir;
  private final List<SafetensorsFile> files;
  private final Map<String, SafetensorsFile> fileOf;

  private CheckpointFolder(Path dir, List<SafetensorsFile> files, Map<String, SafetensorsFile> fileOf) {
    this.dir = dir;
    this.files = files;
    this.fileOf = fileOf;
  }

  public static CheckpointFolder open(Path dir) throws IOException {
    if (!Files.isDirectory(dir)) {
      throw new IOException(dir + ": not a directory");
    }
    List<String> shardNames = shardNames(dir);
    if (shardNames.isEmpty()) {
      throw new IOException(dir + ": no *.safetensors files");
    }
    List<SafetensorsFile> files = new ArrayList<>();
    Map<String, SafetensorsFile> fileOf = new LinkedHashMap<>();
    try {
      for (String name : shardNames) {
        SafetensorsFile f = SafetensorsFile.open(dir.resolve(name));
        files.add(f);
        for (var e : f.entries()) {
          SafetensorsFile previous = fileOf.putIfAbsent(e.spec().name(), f);
          if (previous != null) {
            throw new IOException(dir + ": tensor '" + e.spec().name() + "' is in both "
                + previous.path().getFileName() + " and " + name);
          }
        }
      }
      checkIndex(dir, fileOf);
      return new CheckpointFolder(dir, files, fileOf);
    } catch (IOException | RuntimeException e) {
      for (SafetensorsFile f : files) {
        f.close();
      }
      throw e;
    }
  }

  private static List<String> shardNames(Path dir) throws IOException {
    Path index = dir.resolve(INDEX_FILE);
    if (Files.exists(index)) {
      JsonNode map = readJson(index).get("weight_map");
      if (map == null || !map.isObject()) {
        throw new IOException(index + ": no 'weight_map' object");
      }
      List<String> names = new ArrayList<>();
      for (Iterator<JsonNode> it = map.elements(); it.hasNext(); ) {
        String file = it.next().asText();
        if (file.contains("/") || file.contains("\\") || !file.endsWith(".safetensors")) {
          throw new IOException(index + ": weight_map names '" + file + "', not a shard file name");
        }
        if (!names.contains(file)) {
          names.add(file);
        }
      }
      names.sort(null);
      return names;
    }
    try (Stream<Path> s = Files.list(dir)) {
      return s.map(p -> p.getFileName().toString())
          .filter(n -> n.endsWith(".safetensors"))
          .sorted()
          .toList();
    }
  }

  private static void checkIndex(Path dir, Map<String, SafetensorsFile> fileOf) throws IOException {
    Path index = dir.resolve(INDEX_FILE);
    if (!Files.exists(index)) {
      return;
    }
    JsonNode map = readJson(index).get("weight_map");
    for (Map.Entry<String, JsonNode> kv : map.properties()) {
      SafetensorsFile f = fileOf.get(kv.getKey());
      if (f == null || !f.path().getFileName().toString().equals(kv.getValue().asText())) {
        throw new IOException(index + ": weight_map says tensor '" + kv.getKey() + "' is in "
            + kv.getValue().asText() + ", but it is not there");
      }
    }
    if (map.size() != fileOf.size()) {
      for (String name : fileOf.keySet()) {
        if (!map.has(name)) {
          throw new IOException(index + ": tensor '" + name + "' of "
              + fileOf.get(name).path().getFileName() + " is missing from weight_map");
        }
      }
    }
  }

  static JsonNode readJson(Path file) throws IOException {
    try {
      return JSON.readTree(file.toFile());
    } catch (IOException e) {
      throw new IOException(file + ": not valid JSON: " + e.getMessage(), e);
    }
  }

  public Path dir() {
    return dir;
  }

  /** Every tensor, shard by shard in data order. */
  public List<TensorSpec> tensors() {
    List<TensorSpec> out = new ArrayList<>(fileOf.size());
    for (SafetensorsFile f : files) {
      for (var e : f.entries()) {
        out.add(e.spec());
      }
    }
    return out;
  }

  public TensorSource source(String name) throws IOException {
    return file(name).source(name);
  }

  public TensorSpec spec(String name) {
    return file(name).spec(name);
  }

  public boolean contains(String name) {
    return fileOf.containsKey(name);
  }

  private SafetensorsFile file(String name) {
    SafetensorsFile f = fileOf.get(name);
    if (f == null) {
      throw new IllegalArgumentException(dir + ": no tensor '" + name + "'");
    }
    return f;
  }

  /** {@code config.json} as an object, or an empty object when the folder has none. */
  public ObjectNode config() throws IOException {
    Path p = dir.resolve(CONFIG_FILE);
    if (!Files.exists(p)) {
      return JSON.createObjectNode();
    }
    JsonNode n = readJson(p);
    if (!n.isObject()) {
      throw new IOException(p + ": not a JSON object");
    }
    return (ObjectNode) n;
  }

  /** Files other than the shards, the index and config.json (tokenizer, generation config...). */
  public List<Path> otherFiles() throws IOException {
    try (Stream<Path> s = Files.list(dir)) {
      return s.filter(Files::isRegularFile)
          .filter(p -> {
            String n = p.getFileName().toString();
            return !n.endsWith(".safetensors") && !n.equals(INDEX_FILE) && !n.equals(CONFIG_FILE);
          })
          .sorted()
          .toList();
    }
  }

  @Override
  public void close() throws IOException {
    IOException first = null;
    for (SafetensorsFile f : files) {
      try {
        f.close();
      } catch (IOException e) {
        first = first == null ? e : first;
      }
    }
    if (first != null) {
      throw first;
    }
  }
}
