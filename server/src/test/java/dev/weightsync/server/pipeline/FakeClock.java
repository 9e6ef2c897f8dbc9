package dev.weightsync.server.pipeline;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;

/** A clock that moves only when a test advances it, running the timeouts that fall due. */
final class FakeClock implements PipelineClock {

  private static final class Task implements Cancellable {
    final long due;
    final Runnable run;
    boolean cancelled;
    boolean ran;

    Task(long due, Runnable run) {
      this.due = due;
      this.run = run;
    }

    @Override
    public synchronized void cancel() {
      cancelled = true;
    }
  }

  private long now = 1_000_000_000L;
  private final List<Task> tasks = new ArrayList<>();

  @Override
  public synchronized long nanoTime() {
    return now;
  }

  @Override
  public synchronized Cancellable after(Duration delay, Runnable task) {
    Task t = new Task(now + delay.toNanos(), task);
    tasks.add(t);
    return t;
  }

  /** Moves time on by {@code d}, running (on this thread) each timeout due, in order. */
  void advance(Duration d) {
    long until;
    synchronized (this) {
      until = now + d.toNanos();
    }
    while (true) {
      Task next;
      synchronized (this) {
        next = tasks.stream().filter(t -> !t.ran && !t.cancelled && t.due <= until)
            .min(Comparator.comparingLong(t -> t.due)).orElse(null);
        if (next == null) {
          now = until;
          return;
        }
        now = next.due;
        next.ran = true;
      }
      next.run.run();
    }
  }

  /**
   * Runs every timeout scheduled so far that has not run, cancelled or not: as a timer thread
   * that had already taken the task when it was cancelled.
   */
  void runLate() {
    List<Task> late;
    synchronized (this) {
      late = tasks.stream().filter(t -> !t.ran).toList();
      late.forEach(t -> t.ran = true);
    }
    late.forEach(t -> t.run.run());
  }

  @Override
  public void close() {
  }
}
