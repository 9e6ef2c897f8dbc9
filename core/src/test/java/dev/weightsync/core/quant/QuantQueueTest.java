package dev.weightsync.core.quant;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.weightsync.core.tensor.DType;
import dev.weightsync.core.tensor.TensorSink;
import dev.weightsync.core.tensor.TensorSource;
import dev.weightsync.core.tensor.TensorSpec;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import org.junit.jupiter.api.Test;

class QuantQueueTest {

  /** Hands out futures the test completes by hand; records how many were unfinished at each start. */
  private static class ManualQuantizer implements Quantizer {
    final List<CompletableFuture<QuantError>> started = new java.util.concurrent.CopyOnWriteArrayList<>();
    final List<Long> unfinishedAtStart = new ArrayList<>();

    @Override
    public String device() {
      return "manual";
    }

    @Override
    public QuantError quantize(TensorPlan plan, TensorSource source, TensorSink sink) {
      throw new UnsupportedOperationException();
    }

    @Override
    public CompletableFuture<QuantError> quantizeAsync(TensorPlan plan, TensorSource source,
        TensorSink sink) {
      unfinishedAtStart.add(started.stream().filter(f -> !f.isDone()).count());
      CompletableFuture<QuantError> f = new CompletableFuture<>();
      started.add(f);
      return f;
    }

    @Override
    public void close() {}
  }

  private static TensorPlan plan(String name) {
    return new TensorPlan.Fp8Block(TensorSpec.of(name, DType.BF16, 128, 128), false);
  }

  private static final TensorSource NONE = TensorSource.of(ByteBuffer.allocate(0));
  private static final TensorSink DROP = (name, offset, data) -> { };

  @Test
  void keepsAtMostDepthInFlightAndReportsCompletionsInOrder() throws IOException {
    ManualQuantizer q = new ManualQuantizer();
    List<String> done = new ArrayList<>();
    QuantQueue queue = new QuantQueue(q, 2, (p, e) -> done.add(p.input().name()));
    queue.submit(plan("a"), NONE, DROP);
    queue.submit(plan("b"), NONE, DROP);
    assertThat(done).isEmpty(); // both in flight
    CompletableFuture.runAsync(() -> q.started.get(0).complete(new QuantError(1, 1, 1, 1)),
        CompletableFuture.delayedExecutor(200, java.util.concurrent.TimeUnit.MILLISECONDS));
    queue.submit(plan("c"), NONE, DROP); // waits until a is done, then starts c
    assertThat(done).containsExactly("a");
    assertThat(q.unfinishedAtStart).containsExactly(0L, 1L, 1L); // never more than 2 in flight
    q.started.get(1).complete(new QuantError(2, 2, 2, 2));
    q.started.get(2).complete(new QuantError(3, 3, 3, 3));
    QuantError total = queue.finish();
    assertThat(done).containsExactly("a", "b", "c");
    assertThat(total.elements()).isEqualTo(6);
    assertThat(total.maxAbs()).isEqualTo(3);
  }

  @Test
  void aFailureSurfacesAsTheExceptionQuantizeWouldThrow() {
    Quantizer failing = new ManualQuantizer() {
      @Override
      public CompletableFuture<QuantError> quantizeAsync(TensorPlan plan, TensorSource source,
          TensorSink sink) {
        return CompletableFuture.failedFuture(new NonFiniteWeightException("w", 3, Float.NaN));
      }
    };
    QuantQueue queue = new QuantQueue(failing, 4, null);
    // known to have failed at once: reported on the next submit, not after depth more tensors
    assertThatThrownBy(() -> {
      queue.submit(plan("a"), NONE, DROP);
      queue.submit(plan("b"), NONE, DROP);
    }).isInstanceOf(NonFiniteWeightException.class);
  }

  @Test
  void theSynchronousDefaultRunsInline() throws IOException {
    try (CpuQuantizer cpu = new CpuQuantizer(1)) {
      TensorPlan p = plan("w");
      dev.weightsync.core.MemorySink sink = new dev.weightsync.core.MemorySink(p.outputs());
      ByteBuffer in = CpuQuantizerTest.randomBf16(128 * 128, 5);
      CompletableFuture<QuantError> f = cpu.quantizeAsync(p, TensorSource.of(in), sink);
      assertThat(f).isDone();
      assertThat(f.join().elements()).isEqualTo(128 * 128);
    }
  }

  /**
   * A mapped region is unmapped the moment its work ends, succeeded or failed, and not before: a
   * quantizer's future completes only once nothing reads the source.
   */
  @Test
  void aMappedSourceIsClosedWhenItsWorkEnds(@org.junit.jupiter.api.io.TempDir java.nio.file.Path tmp)
      throws IOException {
    java.nio.file.Path file = java.nio.file.Files.write(tmp.resolve("spool"), new byte[1 << 16]);
    try (java.nio.channels.FileChannel ch = java.nio.channels.FileChannel.open(file)) {
      ManualQuantizer q = new ManualQuantizer();
      QuantQueue queue = new QuantQueue(q, 4, null);
      dev.weightsync.core.tensor.FileRegionSource ok =
          dev.weightsync.core.tensor.FileRegionSource.of(ch, 0, 1 << 15, "a");
      dev.weightsync.core.tensor.FileRegionSource bad =
          dev.weightsync.core.tensor.FileRegionSource.of(ch, 1 << 15, 1 << 15, "b");
      queue.submit(plan("a"), ok, DROP);
      queue.submit(plan("b"), bad, DROP);
      assertThat(ok.window(0, 8).remaining()).as("open while its work runs").isEqualTo(8);
      q.started.get(0).complete(QuantError.NONE);
      assertThatThrownBy(() -> ok.window(0, 8)).isInstanceOf(IllegalStateException.class)
          .hasMessageContaining("closed");
      assertThat(bad.window(0, 8).remaining()).as("open while its work runs").isEqualTo(8);
      q.started.get(1).completeExceptionally(new IOException("injected"));
      assertThatThrownBy(() -> bad.window(0, 8)).as("closed after a failure too")
          .isInstanceOf(IllegalStateException.class);
      assertThatThrownBy(queue::finish).hasMessageContaining("injected");
    }
  }
}
