package dev.weightsync.core.quant;

import dev.weightsync.core.tensor.TensorSink;
import dev.weightsync.core.tensor.TensorSource;
import java.io.IOException;
import java.util.ArrayDeque;
import java.util.Deque;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutionException;

/**
 * Tensors handed to {@link Quantizer#quantizeAsync} one after another, at most {@code depth} in
 * flight: enough to keep a GPU's copy engines and kernels busy together, few enough that the
 * memory held by sources waiting their turn stays bounded. Errors surface in submission order, as
 * the exception {@link Quantizer#quantize} would have thrown. A source that is
 * {@link AutoCloseable} (a mapped file region) is closed as soon as its work has ended, either
 * way: a spool's pages are given back without waiting for the collector. That is safe because a
 * quantizer's future completes only once none of its threads still reads the source (see
 * {@link Quantizer#quantizeAsync}). Not thread-safe: one producer.
 */
public final class QuantQueue {

  /** Called when a tensor's outputs are all in the sink. */
  public interface Done {
    void done(TensorPlan plan, QuantError error);
  }

  private record Pending(TensorPlan plan, CompletableFuture<QuantError> future) {}

  private final Quantizer quantizer;
  private final int depth;
  private final Done done;
  private final Deque<Pending> pending = new ArrayDeque<>();
  private QuantError total = QuantError.NONE;

  public QuantQueue(Quantizer quantizer, int depth, Done done) {
    if (depth < 1) {
      throw new IllegalArgumentException("depth must be at least 1");
    }
    this.quantizer = quantizer;
    this.depth = depth;
    this.done = done;
  }

  /** Starts {@code plan}, first waiting for the oldest tensor when {@code depth} are in flight. */
  public void submit(TensorPlan plan, TensorSource source, TensorSink sink) throws IOException {
    makeRoom();
    pending.add(new Pending(plan, closingAfter(() -> quantizer.quantizeAsync(plan, source, sink),
        source)));
  }

  /**
   * Starts one band of rows of {@code plan}'s tensor ({@code source} holds the band's bytes), as
   * {@link #submit} starts a whole tensor. {@link Done} is told of each band.
   */
  public void submit(TensorPlan plan, RowBand band, TensorSource source, TensorSink sink)
      throws IOException {
    makeRoom();
    pending.add(new Pending(plan, closingAfter(() -> band.quantizeAsync(quantizer, source, sink),
        source)));
  }

  private interface Start {
    CompletableFuture<QuantError> start() throws IOException;
  }

  /** The started work, which closes {@code source} (when closeable) once it has ended. */
  private static CompletableFuture<QuantError> closingAfter(Start work, TensorSource source)
      throws IOException {
    if (!(source instanceof AutoCloseable closeable)) {
      return work.start();
    }
    try {
      return work.start().whenComplete((r, e) -> close(closeable));
    } catch (IOException | RuntimeException e) {
      close(closeable); // never started
      throw e;
    }
  }

  private static void close(AutoCloseable c) {
    try {
      c.close();
    } catch (Exception ignored) {
      // an unmapping cannot fail in a way the caller could act on
    }
  }

  private void makeRoom() throws IOException {
    while (!pending.isEmpty() && pending.peekFirst().future().isDone()) {
      finishOldest(); // report a failure as early as it is known
    }
    while (pending.size() >= depth) {
      finishOldest();
    }
  }

  /** Waits for every tensor in flight and returns the statistics of all tensors submitted. */
  public QuantError finish() throws IOException {
    while (!pending.isEmpty()) {
      finishOldest();
    }
    return total;
  }

  /** Waits for what is in flight, ignoring its outcome: the caller is discarding the output. */
  public void abandon() {
    for (Pending p : pending) {
      p.future().handle((r, e) -> null).join();
    }
    pending.clear();
  }

  private void finishOldest() throws IOException {
    Pending p = pending.removeFirst();
    QuantError e = await(p.future());
    total = total.plus(e);
    if (done != null) {
      done.done(p.plan(), e);
    }
  }

  private static QuantError await(CompletableFuture<QuantError> f) throws IOException {
    try {
      return f.get();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IOException("interrupted while waiting for the quantizer", e);
    } catch (ExecutionException | CompletionException e) {
      throw Failures.rethrow(e);
    }
  }
}
