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
 * The engines' {@link EngineWeights} that must outlive this process: one small JSON file in the
 * staging folder, rewritten atomically (temporary file, fsync, rename) before every step that
 * changes what an engine holds. An engine this sidecar last left serving a version it confirmed
 * needs no entry; the file exists only while some engine is paused or possibly mixed, so that a
 * sidecar killed mid-session knows at restart what it left behind.
 */
public final class SessionLedger {

  private static final ObjectMapper JSON = new ObjectMapper();
  public static final String FILE = ".weightsync-engine-sessions.json";

  private final Path file;
  private final ObjectNode entries;

  public SessionLedger(Path stagingRoot) throws IOException {
    this.file = stagingRoot.resolve(FILE);
    ObjectNode read = JSON.createObjectNode();
    if (Files.exists(file)) {
      JsonNode n;
      try {
        n = JSON.readTree(file.toFile());
      } catch (IOException e) {
        n = null; // a torn file cannot happen (atomic rename); an unreadable one proves nothing
      }
      read = n instanceof ObjectNode o ? o : unreadable();
    }
    this.entries = read;
  }

  /** An unreadable ledger: every engine it might name is treated as possibly mixed. */
  private static ObjectNode unreadable() {
    ObjectNode o = JSON.createObjectNode();
    o.putObject("*").put("kind", EngineWeights.Kind.MAYBE_MIXED.name())
        .put("reason", "the session ledger could not be read");
    return o;
  }

  /** What was recorded for {@code engine}; empty when nothing needs recovering. */
  public synchronized Optional<EngineWeights> get(String engine) {
    JsonNode e = entries.has(engine) ? entries.get(engine) : entries.get("*");
    if (e == null) {
      return Optional.empty();
    }
    if (!e.has("kind")) { // the format before kinds: a session in flight or a failed load
      return Optional.of(EngineWeights.maybeMixed(e.path("previous").asText(""),
          e.path("target").asText(""), "recorded by an older sidecar mid-session"));
    }
    EngineWeights.Kind kind;
    try {
      kind = EngineWeights.Kind.valueOf(e.path("kind").asText());
    } catch (IllegalArgumentException bad) {
      kind = EngineWeights.Kind.MAYBE_MIXED;
    }
    return Optional.of(new EngineWeights(kind, e.path("version").asText(""),
        e.path("target").asText(""), e.path("reason").asText("")));
  }

  /** Records {@code w} for {@code engine}, durably, before the step it describes is sent. */
  public synchronized void record(String engine, EngineWeights w) throws IOException {
    entries.remove("*");
    if (w.kind() == EngineWeights.Kind.SERVING || w.kind() == EngineWeights.Kind.UNKNOWN) {
      entries.remove(engine);
    } else {
      entries.putObject(engine).put("kind", w.kind().name()).put("version", w.version())
          .put("target", w.target()).put("reason", w.reason());
    }
    save();
  }

  /**
   * Writes the entries; with none left, removes the file (nothing to recover). An interrupt of
   * the calling thread is held back meanwhile: it would close the file's channel mid-write
   * (ClosedByInterruptException), and a session's record must land however it is ended.
   */
  private void save() throws IOException {
    boolean interrupted = Thread.interrupted();
    try {
      write();
    } finally {
      if (interrupted) {
        Thread.currentThread().interrupt();
      }
    }
  }

  private void write() throws IOException {
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
    try (FileChannel dir = FileChannel.open(file.getParent(), StandardOpenOption.READ)) {
      dir.force(true); // the rename itself, durable
    } catch (IOException ignored) {
      // not every filesystem lets a folder be synced; the file's contents are
    }
  }
}
