package dev.weightsync.server.engine;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.Optional;

/**
 * What this sidecar has done to its engines that outlives a crash: for each engine, the update
 * session it is in (the version it served before and the one being loaded) or that it left the
 * engine paused after a failed load. Kept as one small JSON file in the staging folder while an
 * entry exists, rewritten atomically (temporary file, fsync, rename), so that a sidecar killed
 * mid-session finds out at restart which engines it paused.
 */
public final class SessionLedger {

  /** An engine's entry: {@code leftPaused} false while a session runs. */
  public record Entry(String previous, String target, boolean leftPaused) {}

  private static final ObjectMapper JSON = new ObjectMapper();
  public static final String FILE = ".weightsync-engine-sessions.json";

  private final Path file;
  private final ObjectNode entries;

  public SessionLedger(Path stagingRoot) throws IOException {
    this.file = stagingRoot.resolve(FILE);
    ObjectNode read = JSON.createObjectNode();
    if (Files.exists(file)) {
      try {
        JsonNode n = JSON.readTree(file.toFile());
        if (n instanceof ObjectNode o) {
          read = o;
        }
      } catch (IOException e) {
        // a torn file cannot happen (atomic rename); an unreadable one says nothing reliable
      }
    }
    this.entries = read;
  }

  public synchronized Optional<Entry> get(String engine) {
    JsonNode e = entries.get(engine);
    if (e == null) {
      return Optional.empty();
    }
    return Optional.of(new Entry(e.path("previous").asText(""), e.path("target").asText(""),
        e.path("left_paused").asBoolean(false)));
  }

  /** Before pausing {@code engine} to load {@code target} over {@code previous}. */
  public synchronized void begin(String engine, String previous, String target) throws IOException {
    entries.putObject(engine).put("previous", previous).put("target", target)
        .put("left_paused", false);
    save();
  }

  /** The session ended with the engine left paused on purpose (a failed load). */
  public synchronized void leftPaused(String engine) throws IOException {
    JsonNode e = entries.get(engine);
    if (e instanceof ObjectNode o) {
      o.put("left_paused", true);
      save();
    }
  }

  /** The engine is serving again (or was never paused): nothing to recover. */
  public synchronized void clear(String engine) throws IOException {
    if (entries.remove(engine) != null) {
      save();
    }
  }

  /** Writes the entries; with none left, removes the file (nothing to recover). */
  private void save() throws IOException {
    if (entries.isEmpty()) {
      Files.deleteIfExists(file);
      return;
    }
    Path tmp = file.resolveSibling(FILE + ".tmp");
    Files.write(tmp, JSON.writeValueAsBytes(entries));
    try (FileChannel c = FileChannel.open(tmp, StandardOpenOption.WRITE)) {
      c.force(true);
    }
    Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
  }
}
