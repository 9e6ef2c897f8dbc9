package dev.weightsync.core.quant;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutionException;
import org.junit.jupiter.api.Test;

class FailuresTest {

  @Test
  void theCauseIsFoundInsideNestedWrappers() {
    IOException disk = new IOException("disk full");
    assertThat(Failures.cause(new CompletionException(new ExecutionException(disk))))
        .isSameAs(disk);
    assertThat(Failures.cause(disk)).isSameAs(disk);
  }

  @Test
  void rethrowGivesWhatTheSynchronousCallWouldHaveThrown() {
    IOException disk = new IOException("disk full");
    assertThat(Failures.rethrow(new CompletionException(disk))).isSameAs(disk);
    assertThat(Failures.rethrow(new UncheckedIOException(disk))).isSameAs(disk);
    IllegalArgumentException bad = new IllegalArgumentException("NaN");
    assertThatThrownBy(() -> Failures.rethrow(new ExecutionException(bad))).isSameAs(bad);
    assertThat(Failures.rethrow(new InterruptedException("stop")))
        .isInstanceOf(IOException.class).hasCauseInstanceOf(InterruptedException.class);
  }

  @Test
  void uncheckedKeepsRuntimeExceptionsAndWrapsTheRest() {
    IllegalStateException gpu = new IllegalStateException("lost");
    assertThat(Failures.unchecked(new ExecutionException(gpu))).isSameAs(gpu);
    assertThat(Failures.unchecked(new IOException("x"))).isInstanceOf(UncheckedIOException.class);
  }
}
