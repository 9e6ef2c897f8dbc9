package dev.weightsync.core;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.List;

/**
 * The golden checkpoints: the repository's own fixtures ({@code testdata/golden}, written by
 * {@code tools/golden/make_golden.py}), which every test reads, and {@code ../shared/golden}
 * beside the project root, an extra independent set the golden tests also check where it exists.
 */
public final class Golden {
  private Golden() {}

  /** A folder of the repository's fixtures: bf16, fp8, fp8_ue8m0, int4_g128 or int4_g32. */
  public static Path dir(String name) {
    return folder(fixtures(), name);
  }

  /** Every golden set to check against: the repository's, then the shared one where present. */
  public static List<Path> roots() {
    List<Path> roots = new ArrayList<>(List.of(fixtures()));
    String shared = System.getProperty("weightsync.sharedGolden", "../../shared/golden");
    Path s = Paths.get(shared).toAbsolutePath().normalize();
    if (Files.isDirectory(s.resolve("bf16"))) {
      roots.add(s);
    }
    return roots;
  }

  public static Path folder(Path root, String name) {
    Path p = root.resolve(name).normalize();
    if (!Files.isDirectory(p)) {
      throw new IllegalStateException("golden folder missing: " + p.toAbsolutePath());
    }
    return p;
  }

  private static Path fixtures() {
    String configured = System.getProperty("weightsync.fixtures");
    return (configured != null ? Paths.get(configured) : Paths.get("../testdata/golden"))
        .toAbsolutePath().normalize();
  }
}
