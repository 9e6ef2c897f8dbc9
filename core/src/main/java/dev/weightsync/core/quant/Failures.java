package dev.weightsync.core.quant;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutionException;

/**
 * What a quantizing task that ran elsewhere (a pool, a future, the GPU's owner thread) threw,
 * unwrapped and rethrown as the synchronous call would have thrown it. The one place that knows
 * the wrappers: {@link CompletionException}, {@link ExecutionException},
 * {@link UncheckedIOException}.
 */
public final class Failures {

  private Failures() {
  }

  /** The failure inside any number of completion and execution wrappers. */
  public static Throwable cause(Throwable t) {
    while ((t instanceof CompletionException || t instanceof ExecutionException)
        && t.getCause() != null) {
      t = t.getCause();
    }
    return t;
  }

  /**
   * {@code t}'s cause as {@link Quantizer#quantize} throws it: an IOException (also out of an
   * UncheckedIOException) is returned for the caller to throw; runtime exceptions and errors are
   * rethrown as they are; anything else (an interrupt, say) is wrapped in an IOException.
   */
  public static IOException rethrow(Throwable t) {
    Throwable c = cause(t);
    if (c instanceof IOException io) {
      return io;
    }
    if (c instanceof UncheckedIOException u) {
      return u.getCause();
    }
    if (c instanceof RuntimeException r) {
      throw r;
    }
    if (c instanceof Error err) {
      throw err;
    }
    return new IOException(c);
  }

  /**
   * {@code t}'s cause, unchecked: runtime exceptions and errors as they are, an IOException as an
   * UncheckedIOException, anything else in an IllegalStateException.
   */
  public static RuntimeException unchecked(Throwable t) {
    Throwable c = cause(t);
    if (c instanceof RuntimeException r) {
      return r;
    }
    if (c instanceof Error err) {
      throw err;
    }
    if (c instanceof IOException io) {
      return new UncheckedIOException(io);
    }
    return new IllegalStateException(c);
  }
}
