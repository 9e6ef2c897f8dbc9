package dev.weightsync.server.pipeline;

import java.time.Duration;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;

/**
 * Time for the pipeline: what it measures durations with and what runs its part timeouts. A seam
 * so that tests drive timeouts and interleavings with a clock they advance themselves.
 */
public interface PipelineClock extends AutoCloseable {

  /** A monotonic reading in nanoseconds, as {@link System#nanoTime()}. */
  long nanoTime();

  /** Runs {@code task} once, {@code delay} from now, unless cancelled first. */
  Cancellable after(Duration delay, Runnable task);

  /** Stops running timeouts that have not run yet. */
  @Override
  void close();

  /** A scheduled task. */
  interface Cancellable {
    void cancel();
  }

  /** The system's clock, with timeouts on one daemon thread. */
  static PipelineClock system() {
    ScheduledExecutorService timer = Executors.newSingleThreadScheduledExecutor(r -> {
      Thread t = new Thread(r, "weightsync-part-timeout");
      t.setDaemon(true);
      return t;
    });
    return new PipelineClock() {
      @Override
      public long nanoTime() {
        return System.nanoTime();
      }

      @Override
      public Cancellable after(Duration delay, Runnable task) {
        ScheduledFuture<?> f = timer.schedule(task, delay.toNanos(), TimeUnit.NANOSECONDS);
        return () -> f.cancel(false);
      }

      @Override
      public void close() {
        timer.shutdownNow();
      }
    };
  }
}
