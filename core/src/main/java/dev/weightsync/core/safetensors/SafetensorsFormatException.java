package dev.weightsync.core.safetensors;

import java.io.IOException;
import java.nio.file.Path;

/** A safetensors file whose header breaks the format; the message names the file and tensor. */
public final class SafetensorsFormatException extends IOException {
  private static final long serialVersionUID = 1L;

  public SafetensorsFormatException(Path file, String tensor, String problem) {
    super(file + ": not a safetensors file"
        + (tensor == null ? "" : ", tensor '" + tensor + "'") + ": " + problem);
  }
}
