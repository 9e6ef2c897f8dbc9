package dev.weightsync.cli;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/** Reads the bearer token a client sends: the first non-blank line of a file. */
final class Tokens {
  private Tokens() {}

  static String read(Path file) throws IOException {
    if (file == null) {
      return null;
    }
    return Files.readAllLines(file).stream().map(String::trim).filter(l -> !l.isEmpty())
        .findFirst().orElseThrow(() -> new IOException(file + ": no token in the file"));
  }
}
