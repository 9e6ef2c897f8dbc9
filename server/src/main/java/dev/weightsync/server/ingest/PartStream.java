package dev.weightsync.server.ingest;

import com.google.common.util.concurrent.MoreExecutors;
import dev.weightsync.proto.v1.Format;
import dev.weightsync.proto.v1.UpdateWeightsRequest;
import dev.weightsync.proto.v1.UpdateWeightsResponse;
import dev.weightsync.server.ingest.ZeroCopyRequests.Received;
import dev.weightsync.server.metrics.SyncMetrics;
import dev.weightsync.server.pipeline.PartResult;
import dev.weightsync.server.pipeline.VersionListener;
import dev.weightsync.server.pipeline.VersionOutcome;
import io.grpc.Status;
import io.grpc.StatusException;
import io.grpc.stub.ServerCallStreamObserver;
import io.grpc.stub.StreamObserver;
import java.time.Duration;
import java.util.Locale;
import java.util.concurrent.Executor;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.logging.Logger;

/**
 * One part's stream, whichever RPC carries it: hands each message to the {@link PartReceiver} on
 * a sequential executor of its own (never on a gRPC thread), asks for the next message only when
 * the previous one has been handled (manual flow control, two ahead), holds the validated commit
 * until the half-close, ends the part exactly once (committed, refused, cancelled or timed out),
 * and gives its admission slot back when the call closes.
 */
final class PartStream<T> implements StreamObserver<Received> {

  private static final Logger LOG = Logger.getLogger(PartStream.class.getName());

  /** Where the stream's outcome goes: the version's response, and CUDA bucket receipts. */
  interface Replies<T> {
    T result(UpdateWeightsResponse r);

    /** Null when the RPC acknowledges no buckets. */
    T bucketDone(int index);

    VersionListener listener(ServerCallStreamObserver<T> call, PartResult part);
  }

  /** Silence allowed: after the header-timeout before any tensor data, the idle timeout after. */
  record Timeouts(Duration header, Duration idle) {}

  private final ServerCallStreamObserver<T> call;
  private final Replies<T> replies;
  private StreamAdmission.Slot slot;
  private final PartReceiver receiver;
  private final Format format;
  private final SyncMetrics metrics;
  private final Timeouts timeouts;
  private final ScheduledExecutorService watchdog;
  private final Executor serial;
  private final IdleClock clock = new IdleClock(System::nanoTime);
  private final AtomicBoolean finished = new AtomicBoolean();
  /** The part's validated commit, held until the half-close; touched on {@code serial} only. */
  private PartResult committed;

  PartStream(ServerCallStreamObserver<T> call, Replies<T> replies, PartReceiver receiver,
      Format format, SyncMetrics metrics, Timeouts timeouts, Executor workers,
      ScheduledExecutorService watchdog) {
    this.call = call;
    this.replies = replies;
    this.receiver = receiver;
    this.format = format;
    this.metrics = metrics;
    this.timeouts = timeouts;
    this.watchdog = watchdog;
    this.serial = MoreExecutors.newSequentialExecutor(workers);
  }

  /**
   * Starts the stream: {@code slot} is given back when the call closes, however it ends, and
   * already before the caller is answered, so that a caller who sends again at once finds it free.
   */
  PartStream<T> start(StreamAdmission.Slot slot) {
    this.slot = slot;
    call.setOnCloseHandler(slot::release);
    call.setOnCancelHandler(() -> {
      slot.release();
      serial.execute(this::abandon);
    });
    watch();
    request(2);
    return this;
  }

  private void request(int n) {
    clock.requested(n);
    call.request(n);
  }

  @Override
  public void onNext(Received r) {
    clock.delivered();
    try {
      serial.execute(() -> {
        try {
          handle(r);
        } finally {
          r.release(); // its bytes are staged, or the part has failed
        }
      });
    } catch (RejectedExecutionException e) { // shutting down
      r.release();
      throw e;
    }
  }

  private void handle(Received r) {
    if (finished.get()) {
      return;
    }
    if (r.refused() != null) {
      fail(r.refused());
      return;
    }
    UpdateWeightsRequest req = r.request();
    if (committed != null) {
      fail(Status.INVALID_ARGUMENT.withDescription("a " + req.getKindCase().name()
          .toLowerCase(Locale.ROOT) + " message arrived after the commit of "
          + receiver.describe() + ": the commit is a part's last message; part discarded"));
      return;
    }
    try {
      switch (req.getKindCase()) {
        case HEADER -> receiver.header(req.getHeader(), format);
        case CHUNK -> receiver.chunk(req.getChunk());
        case CUDA_BUCKET -> {
          receiver.bucket(req.getCudaBucket());
          T done = replies.bucketDone(req.getCudaBucket().getIndex());
          if (done != null) {
            call.onNext(done);
          }
        }
        case COMMIT -> committed = receiver.commit(req.getCommit()); // on to the half-close
        default -> throw Status.INVALID_ARGUMENT.withDescription(
            "a message with no header, chunk, CUDA bucket or commit").asException();
      }
      request(1);
    } catch (StatusException e) {
      fail(e.getStatus());
    } catch (RuntimeException e) {
      LOG.severe(receiver.describe() + ": " + e);
      fail(Status.INTERNAL.withDescription(String.valueOf(e.getMessage())).withCause(e));
    }
  }

  @Override
  public void onError(Throwable t) {
    serial.execute(this::abandon);
  }

  @Override
  public void onCompleted() {
    serial.execute(() -> {
      if (committed == null) {
        fail(Status.INVALID_ARGUMENT.withDescription(
            "the stream of " + receiver.describe() + " ended without a commit"));
      } else if (finished.compareAndSet(false, true)) {
        receiver.part().commit(committed, releasingFirst(replies.listener(call, committed)));
      }
    });
  }

  private void fail(Status s) {
    if (finished.compareAndSet(false, true)) {
      LOG.info(() -> receiver.describe() + ": refused: " + s.getCode() + " " + s.getDescription());
      metrics.updateFailed(s.getCode().name().toLowerCase(Locale.ROOT),
          receiver.secondsSinceStart());
      receiver.discard();
      slot.release();
      call.onError(s.asRuntimeException());
    }
  }

  /** {@code answer}, with the stream's slot given back before the caller hears the outcome. */
  private VersionListener releasingFirst(VersionListener answer) {
    return new VersionListener() {
      @Override
      public void completed(VersionOutcome outcome) {
        slot.release();
        answer.completed(outcome);
      }

      @Override
      public void failed(Status status) {
        slot.release();
        answer.failed(status);
      }

      @Override
      public void enginesFailed(VersionOutcome outcome, Status status) {
        slot.release();
        answer.enginesFailed(outcome, status);
      }
    };
  }

  private void abandon() {
    if (finished.compareAndSet(false, true)) {
      LOG.info(() -> receiver.describe() + ": stream cancelled or broken; part discarded");
      metrics.updateFailed("cancelled", receiver.secondsSinceStart());
      receiver.discard();
    }
  }

  /**
   * Ends a stream whose caller stays silent, while asked for more, for longer than allowed:
   * header-timeout until it has sent tensor data, the idle timeout after. The part is discarded
   * and the caller gets DEADLINE_EXCEEDED: nothing waits forever on a silent trainer, and
   * streams that only hold a slot give it back soon.
   */
  private void watch() {
    if (finished.get()) {
      return;
    }
    Duration allowed = receiver.hasData() ? timeouts.idle() : timeouts.header();
    long left = allowed.toNanos() - clock.silentNanos();
    if (left <= 0) {
      serial.execute(() -> timedOut(allowed));
      return;
    }
    try {
      watchdog.schedule(this::watch, Math.min(left, TimeUnit.SECONDS.toNanos(1)),
          TimeUnit.NANOSECONDS);
    } catch (RejectedExecutionException e) {
      // the service is closing: every stream ends with the server
    }
  }

  private void timedOut(Duration allowed) {
    if (finished.get()) {
      return;
    }
    if (clock.silentNanos() < allowed.toNanos()) { // a message arrived meanwhile
      watch();
      return;
    }
    String seconds = allowed.toMillis() % 1000 == 0 ? String.valueOf(allowed.toSeconds())
        : String.valueOf(allowed.toMillis() / 1000.0);
    String what = receiver.hasData() ? "sent nothing for " + seconds + " s before its commit"
        : (receiver.hasHeader() ? "sent only its header" : "sent nothing") + " for " + seconds
            + " s (header-timeout)";
    if (finished.compareAndSet(false, true)) {
      Status s = Status.DEADLINE_EXCEEDED.withDescription("the stream of " + receiver.describe()
          + " " + what + "; part discarded");
      LOG.info(s::getDescription);
      metrics.updateFailed("deadline_exceeded", receiver.secondsSinceStart());
      receiver.discard();
      slot.release();
      call.onError(s.asRuntimeException());
    }
  }
}
