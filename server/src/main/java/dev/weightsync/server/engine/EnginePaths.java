package dev.weightsync.server.engine;

import java.nio.file.Path;

/**
 * Where an engine finds a staged folder: at the sidecar's own path, or, when the engine mounts the
 * staging folder at another path ({@code engine-staging-dir}), at the same place under that one.
 */
public record EnginePaths(Path stagingDir, String engineStagingDir) {

  /** The engine sees the staging folder where the sidecar does. */
  public static EnginePaths same() {
    return new EnginePaths(null, null);
  }

  /** {@code folder}'s absolute path as the engine sees it. */
  public String of(Path folder) {
    Path abs = folder.toAbsolutePath().normalize();
    if (engineStagingDir == null || stagingDir == null) {
      return abs.toString();
    }
    Path root = stagingDir.toAbsolutePath().normalize();
    if (!abs.startsWith(root)) {
      throw new IllegalArgumentException(abs + " is not in the staging folder " + root);
    }
    String rel = root.relativize(abs).toString().replace('\\', '/');
    String base = engineStagingDir.endsWith("/") ? engineStagingDir.substring(0,
        engineStagingDir.length() - 1) : engineStagingDir;
    return rel.isEmpty() ? base : base + "/" + rel;
  }
}
