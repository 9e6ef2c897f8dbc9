package dev.weightsync.it;

import static org.assertj.core.api.Assertions.assertThat;

import dev.weightsync.cli.engine.StandInEngine;
import dev.weightsync.server.engine.Delivery;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.function.BooleanSupplier;
import java.util.stream.Stream;

/** What the engine session tables (SGLang's and vLLM's) share: staged folders and waits. */
final class SessionFixtures {
  private SessionFixtures() {}

  /** A complete staged folder for {@code version} (the fp8 fixture, as the stand-in loads it). */
  static Delivery delivery(Path staging, String version) {
    Path folder = staging.resolve(version);
    try {
      if (!Files.isDirectory(folder)) {
        Files.createDirectories(folder);
        try (Stream<Path> s = Files.list(Launcher.golden("fp8"))) {
          for (Path f : s.toList()) {
            Files.copy(f, folder.resolve(f.getFileName()));
          }
        }
      }
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    return new Delivery(folder, version, 0, 1);
  }

  /** Waits until the engine has handled every call in flight (late answers, hangs included). */
  static void awaitQuiet(StandInEngine engine) throws Exception {
    await(() -> engine.inFlight() == 0);
  }

  /** Waits (up to 10 s) until {@code condition} holds. */
  static void await(BooleanSupplier condition) throws Exception {
    long deadline = System.nanoTime() + 10_000_000_000L;
    while (!condition.getAsBoolean()) {
      assertThat(System.nanoTime()).as("timed out").isLessThan(deadline);
      Thread.sleep(10);
    }
  }
}
