package dev.weightsync.core;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;

/** Where the shared golden checkpoints are ({@code ../shared/golden} from the project root). */
public final class Golden {
  private Golden() {}

  public static Path dir(String name) {
    String configured = System.getProperty("weightsync.golden");
    Path root = configured != null ? Paths.get(configured) : Paths.get("../../shared/golden");
    Path p = root.resolve(name).normalize();
    if (!Files.isDirectory(p)) {
      throw new IllegalStateException("golden folder missing: " + p.toAbsolutePath()
          + " (the tests read ../shared/golden beside the project root)");
    }
    return p;
  }
}
