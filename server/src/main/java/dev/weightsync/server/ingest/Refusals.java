package dev.weightsync.server.ingest;

import dev.weightsync.core.tensor.DType;
import io.grpc.Status;
import io.grpc.StatusException;
import java.util.Arrays;
import java.util.stream.Collectors;

/**
 * How ingest says no: the status for each kind of refusal, the checks on caller-chosen names and
 * dtypes, and caller text made safe to repeat in a status message or a log line.
 */
final class Refusals {
  private Refusals() {}

  /** The longest tensor name: also where caller text is clipped. */
  static final int MAX_NAME_LENGTH = 1024;

  /** The stream itself is wrong. */
  static StatusException invalid(String message) {
    return Status.INVALID_ARGUMENT.withDescription(message).asException();
  }

  /** A limit refused it. */
  static StatusException exhausted(String message) {
    return Status.RESOURCE_EXHAUSTED.withDescription(message).asException();
  }

  /**
   * Caller-supplied text made safe for a status message and one log line: control characters
   * escaped, and clipped just beyond the longest legal value (a tensor name's 1024 characters),
   * so a legal name is shown whole and a hostile megabyte never is.
   */
  static String printable(String text) {
    StringBuilder b = new StringBuilder();
    for (int i = 0; i < text.length(); ) {
      if (b.length() > MAX_NAME_LENGTH) {
        return b + "...";
      }
      int c = text.codePointAt(i);
      i += Character.charCount(c);
      if (c < 0x20 || c == 0x7F) {
        b.append(String.format("\\x%02x", c));
      } else {
        b.appendCodePoint(c);
      }
    }
    return b.toString();
  }

  /**
   * A tensor name becomes a key of the staged safetensors header and appears in errors and logs:
   * 1-1024 characters, no control characters, and never {@code __metadata__}, the header's own
   * key (a tensor of that name would make the staged file unreadable).
   */
  static void checkName(String name) throws StatusException {
    if (name.isEmpty() || name.length() > MAX_NAME_LENGTH) {
      throw invalid("tensor names must be 1-" + MAX_NAME_LENGTH + " characters; '"
          + printable(name) + "' has " + name.length());
    }
    if (name.equals("__metadata__")) {
      throw invalid("__metadata__ is the safetensors header's own key, not a tensor name");
    }
    if (name.chars().anyMatch(ch -> ch < 0x20 || ch == 0x7F)) {
      throw invalid("tensor name '" + printable(name) + "' holds control characters");
    }
  }

  /** The dtype named {@code name} for {@code tensor}, or INVALID_ARGUMENT listing the known. */
  static DType dtype(String tensor, String name) throws StatusException {
    try {
      return DType.parse(name);
    } catch (IllegalArgumentException e) {
      throw invalid("tensor " + printable(tensor) + ": unknown dtype '" + printable(name)
          + "' (known: " + Arrays.stream(DType.values()).map(Enum::name)
              .collect(Collectors.joining(", ")) + ")");
    }
  }
}
