package dev.weightsync.server.ingest;

import com.google.common.util.concurrent.MoreExecutors;
import dev.weightsync.core.quant.Quantizer;
import dev.weightsync.core.quant.TensorSelector;
import dev.weightsync.proto.v1.BucketDone;
import dev.weightsync.proto.v1.EngineResult;
import dev.weightsync.proto.v1.EngineStatus;
import dev.weightsync.proto.v1.Format;
import dev.weightsync.proto.v1.GetStatusRequest;
import dev.weightsync.proto.v1.GetStatusResponse;
import dev.weightsync.proto.v1.PhaseTimings;
import dev.weightsync.proto.v1.QuantizationError;
import dev.weightsync.proto.v1.UpdateWeightsCudaReply;
import dev.weightsync.proto.v1.UpdateWeightsRequest;
import dev.weightsync.proto.v1.UpdateWeightsResponse;
import dev.weightsync.proto.v1.VersionProgress;
import dev.weightsync.proto.v1.WeightSyncGrpc;
import dev.weightsync.server.engine.EngineAdapter;
import dev.weightsync.server.engine.EngineState;
import dev.weightsync.server.ingest.ZeroCopyRequests.Received;
import dev.weightsync.server.metrics.SyncMetrics;
import dev.weightsync.server.pipeline.PartResult;
import dev.weightsync.server.pipeline.VersionCoordinator;
import dev.weightsync.server.pipeline.VersionListener;
import dev.weightsync.server.pipeline.VersionOutcome;
import io.grpc.BindableService;
import io.grpc.ServerServiceDefinition;
import io.grpc.Status;
import io.grpc.StatusException;
import io.grpc.stub.ServerCallStreamObserver;
import io.grpc.stub.StreamObserver;
import java.util.concurrent.Executor;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.logging.Logger;

/**
 * The {@code WeightSync} gRPC service. Each UpdateWeights stream is handled on a sequential
 * executor of its own (never on a gRPC callback thread), and asks for its next message only when
 * the previous one has been spooled (and, for a complete tensor, quantized): manual flow control,
 * so a fast trainer can never make the sidecar buffer a model. Requests arrive through
 * {@link ZeroCopyRequests}: a chunk's bytes are Netty's own buffers until they are spooled.
 */
public final class WeightSyncService implements WeightSyncGrpc.AsyncService, BindableService {

  private static final Logger LOG = Logger.getLogger(WeightSyncService.class.getName());

  private final VersionCoordinator coordinator;
  private final Quantizer quantizer;
  private final TensorSelector selector;
  private final Format format;
  private final IngestLimits limits;
  private final java.util.concurrent.atomic.AtomicInteger openStreams =
      new java.util.concurrent.atomic.AtomicInteger();
  private final ExecutorService workers;
  private final long startNanos = System.nanoTime();
  private final String role;
  private final java.util.function.Supplier<String> deviceNote;
  /** Engines not answering their health check now: the same check /readyz and gRPC health use. */
  private final java.util.function.Supplier<java.util.Set<String>> unreachable;
  private final SyncMetrics metrics;
  private final java.time.Duration idleTimeout;
  private final java.util.concurrent.ScheduledExecutorService watchdog =
      java.util.concurrent.Executors.newSingleThreadScheduledExecutor(r -> {
        Thread t = new Thread(r, "weightsync-stream-watchdog");
        t.setDaemon(true);
        return t;
      });

  public WeightSyncService(VersionCoordinator coordinator, Quantizer quantizer,
      TensorSelector selector, Format format, IngestLimits limits, ExecutorService workers,
      String role, java.util.function.Supplier<String> deviceNote, SyncMetrics metrics,
      java.time.Duration idleTimeout, java.util.function.Supplier<java.util.Set<String>> unreachable) {
    this.unreachable = unreachable;
    this.metrics = metrics;
    this.idleTimeout = idleTimeout;
    this.coordinator = coordinator;
    this.quantizer = quantizer;
    this.selector = selector;
    this.format = format;
    this.limits = limits;
    this.workers = workers;
    this.role = role;
    this.deviceNote = deviceNote;
  }

  /** The proto enum for a core format. */
  public static Format toProto(dev.weightsync.core.quant.Format f) {
    return switch (f) {
      case FP8_BLOCK -> Format.FP8_BLOCK;
      case FP8_BLOCK_UE8M0 -> Format.FP8_BLOCK_UE8M0;
      case INT4_GROUP -> Format.INT4_GROUP;
      case BF16 -> Format.BF16;
    };
  }

  /**
   * The service with UpdateWeights and UpdateWeightsCuda parsed by {@link ZeroCopyRequests};
   * GetStatus and ResumeEngine as generated.
   */
  @Override
  public ServerServiceDefinition bindService() {
    return ZeroCopyRequests.bind(WeightSyncGrpc.bindService(this),
        responses -> receive((ServerCallStreamObserver<UpdateWeightsResponse>) responses, r -> r,
            null),
        // an acknowledgement per CUDA bucket: the trainer may free or reuse a bucket's memory
        // once its BucketDone arrives, long before the version's result
        responses -> receive((ServerCallStreamObserver<UpdateWeightsCudaReply>) responses,
            r -> UpdateWeightsCudaReply.newBuilder().setResult(r).build(),
            i -> UpdateWeightsCudaReply.newBuilder()
                .setBucketDone(BucketDone.newBuilder().setIndex(i)).build()));
  }

  /**
   * One part's stream, whichever RPC carries it: {@code result} wraps the version's response,
   * {@code bucketDone} (null when the RPC has none) acknowledges a CUDA bucket.
   */
  private <T> StreamObserver<Received> receive(ServerCallStreamObserver<T> call,
      java.util.function.Function<UpdateWeightsResponse, T> result,
      java.util.function.IntFunction<T> bucketDone) {
    call.disableAutoRequest();
    if (openStreams.incrementAndGet() > limits.maxStreams()) {
      openStreams.decrementAndGet();
      metrics.updateFailed("resource_exhausted", 0);
      call.onError(Status.RESOURCE_EXHAUSTED.withDescription(limits.maxStreams()
          + " UpdateWeights streams are open (max-streams); retry when one ends").asRuntimeException());
      return new StreamObserver<>() { // the call is closed: drop whatever still arrives
        @Override
        public void onNext(Received r) {
          r.release();
        }

        @Override
        public void onError(Throwable t) {}

        @Override
        public void onCompleted() {}
      };
    }
    AtomicBoolean counted = new AtomicBoolean(true);
    Runnable release = () -> {
      if (counted.compareAndSet(true, false)) {
        openStreams.decrementAndGet();
      }
    };
    call.setOnCloseHandler(release);
    Executor serial = MoreExecutors.newSequentialExecutor(workers);
    PartReceiver receiver = new PartReceiver(coordinator, quantizer, selector, limits,
        metrics, role);
    AtomicBoolean finished = new AtomicBoolean();
    // The part's validated commit, held until the stream half-closes: a commit is a part's last
    // message, and one more message after it refuses the part. Touched on `serial` only.
    PartResult[] committed = new PartResult[1];

    Runnable abandon = () -> {
      if (finished.compareAndSet(false, true)) {
        LOG.info(() -> receiver.describe() + ": stream cancelled or broken; part discarded");
        metrics.updateFailed("cancelled", receiver.secondsSinceStart());
        receiver.discard();
      }
    };
    call.setOnCancelHandler(() -> {
      release.run();
      serial.execute(abandon);
    });
    java.util.concurrent.atomic.AtomicLong lastMessage =
        new java.util.concurrent.atomic.AtomicLong(System.nanoTime());

    StreamObserver<Received> observer = new StreamObserver<>() {
      @Override
      public void onNext(Received r) {
        lastMessage.set(System.nanoTime());
        try {
          serial.execute(() -> {
            try {
              handle(r);
            } finally {
              r.release(); // its bytes are spooled, or the part has failed
            }
          });
        } catch (java.util.concurrent.RejectedExecutionException e) { // shutting down
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
        if (committed[0] != null) {
          fail(Status.INVALID_ARGUMENT.withDescription("a " + req.getKindCase().name()
              .toLowerCase(java.util.Locale.ROOT) + " message arrived after the commit of "
              + receiver.describe() + ": the commit is a part's last message; part discarded"));
          return;
        }
        try {
          switch (req.getKindCase()) {
            case HEADER -> receiver.header(req.getHeader(), format);
            case CHUNK -> receiver.chunk(req.getChunk());
            case CUDA_BUCKET -> {
              receiver.bucket(req.getCudaBucket());
              if (bucketDone != null) {
                call.onNext(bucketDone.apply(req.getCudaBucket().getIndex()));
              }
            }
            case COMMIT -> committed[0] = receiver.commit(req.getCommit()); // on to the half-close
            default -> throw Status.INVALID_ARGUMENT.withDescription(
                "a message with no header, chunk, CUDA bucket or commit").asException();
          }
          call.request(1);
        } catch (StatusException e) {
          fail(e.getStatus());
        } catch (RuntimeException e) {
          LOG.severe(receiver.describe() + ": " + e);
          fail(Status.INTERNAL.withDescription(String.valueOf(e.getMessage())).withCause(e));
        }
      }

      private void fail(Status s) {
        if (finished.compareAndSet(false, true)) {
          LOG.info(() -> receiver.describe() + ": refused: " + s.getCode() + " " + s.getDescription());
          metrics.updateFailed(s.getCode().name().toLowerCase(java.util.Locale.ROOT),
              receiver.secondsSinceStart());
          receiver.discard();
          call.onError(s.asRuntimeException());
        }
      }

      @Override
      public void onError(Throwable t) {
        serial.execute(abandon);
      }

      @Override
      public void onCompleted() {
        serial.execute(() -> {
          PartResult part = committed[0];
          if (part == null) {
            fail(Status.INVALID_ARGUMENT.withDescription(
                "the stream of " + receiver.describe() + " ended without a commit"));
          } else if (finished.compareAndSet(false, true)) {
            receiver.part().commit(part, listener(call, result, part.partIndex(), part.relayed()));
          }
        });
      }
    };
    watch(serial, finished, lastMessage, () -> serial.execute(() -> failIdle(receiver, finished,
        call, idleTimeout, metrics)));
    call.request(2);
    return observer;
  }

  /**
   * A stream that sends nothing for the idle timeout (the part timeout) before its commit is
   * ended with DEADLINE_EXCEEDED and its part discarded: nothing waits forever on a silent trainer.
   */
  private void watch(Executor serial, AtomicBoolean finished,
      java.util.concurrent.atomic.AtomicLong lastMessage, Runnable onIdle) {
    long idleNanos = idleTimeout.toNanos();
    long wait = Math.max(0, lastMessage.get() + idleNanos - System.nanoTime());
    watchdog.schedule(() -> {
      if (finished.get()) {
        return;
      }
      if (System.nanoTime() - lastMessage.get() >= idleNanos) {
        onIdle.run();
      } else {
        watch(serial, finished, lastMessage, onIdle);
      }
    }, wait, java.util.concurrent.TimeUnit.NANOSECONDS);
  }

  private static void failIdle(PartReceiver receiver, AtomicBoolean finished,
      ServerCallStreamObserver<?> call, java.time.Duration idleTimeout, SyncMetrics metrics) {
    if (finished.compareAndSet(false, true)) {
      Status s = Status.DEADLINE_EXCEEDED.withDescription("the stream of " + receiver.describe()
          + " sent nothing for " + idleTimeout.toSeconds() + " s before its commit; part discarded");
      LOG.info(() -> s.getDescription());
      metrics.updateFailed("deadline_exceeded", receiver.secondsSinceStart());
      receiver.discard();
      call.onError(s.asRuntimeException());
    }
  }

  /** Stops the idle watchdog. */
  public void close() {
    watchdog.shutdownNow();
  }

  /**
   * Answers the part's stream once its version ends. A relay sender ({@code relayed}) is answered
   * with the outcome even when engines failed: each engine's result is what it needs to apply its
   * own delivery policy.
   */
  private static <T> VersionListener listener(ServerCallStreamObserver<T> call,
      java.util.function.Function<UpdateWeightsResponse, T> wrap, int partIndex, boolean relayed) {
    return new VersionListener() {
      @Override
      public void enginesFailed(VersionOutcome o, Status status) {
        if (relayed) {
          completed(o);
        } else {
          failed(status);
        }
      }

      @Override
      public void completed(VersionOutcome o) {
        if (call.isCancelled()) {
          return;
        }
        UpdateWeightsResponse.Builder r = UpdateWeightsResponse.newBuilder()
            .setWeightVersion(o.version())
            .setPartIndex(partIndex)
            .setTimings(PhaseTimings.newBuilder()
                .setReceiveSeconds(o.receiveSeconds())
                .setQuantizeSeconds(o.quantizeSeconds())
                .setStageSeconds(o.stageSeconds())
                .setEngineSeconds(o.engineSeconds())
                .setTotalSeconds(o.totalSeconds()))
            .setBytesIn(o.bytesIn())
            .setBytesOut(o.bytesOut())
            .setTensorsIn(o.tensorsIn())
            .setTensorsOut(o.tensorsOut())
            .setQuantizationError(QuantizationError.newBuilder()
                .setMaxAbs(o.error().maxAbs()).setRelRms(o.error().relRms()))
            .setStagedPath(o.staged().toString());
        for (var e : o.engines()) {
          r.addEngines(toProto(e));
        }
        call.onNext(wrap.apply(r.build()));
        call.onCompleted();
      }

      @Override
      public void failed(Status status) {
        if (!call.isCancelled()) {
          call.onError(status.asRuntimeException());
        }
      }
    };
  }

  static EngineResult toProto(dev.weightsync.server.engine.EngineResult e) {
    EngineResult.Builder b = EngineResult.newBuilder()
        .setEngine(e.engine())
        .setOutcome(dev.weightsync.proto.v1.EngineOutcome.valueOf(e.outcome().name()))
        .setLoadedVersion(e.loadedVersion())
        .setMessage(e.message())
        .setSeconds(e.seconds());
    e.engines().forEach(behind -> b.addEngines(toProto(behind)));
    return b.build();
  }

  /** {@code weightsync resume}: an operator releases a paused engine on purpose. */
  @Override
  public void resumeEngine(dev.weightsync.proto.v1.ResumeEngineRequest request,
      StreamObserver<dev.weightsync.proto.v1.ResumeEngineResponse> responses) {
    String name = request.getEngine();
    dev.weightsync.server.engine.SglangAdapter engine = coordinator.engines().stream()
        .filter(e -> e instanceof dev.weightsync.server.engine.SglangAdapter && e.name().equals(name))
        .map(e -> (dev.weightsync.server.engine.SglangAdapter) e).findFirst().orElse(null);
    if (engine == null) {
      responses.onError(io.grpc.Status.NOT_FOUND.withDescription("no engine '"
          + PartReceiver.printable(name) + "' here; engines: "
          + coordinator.engines().stream().map(EngineAdapter::name).toList()).asException());
      return;
    }
    try {
      boolean mixed = engine.weights().mixed();
      EngineState s = engine.operatorResume(request.getAcceptMixed());
      if (metrics != null) {
        metrics.operatorResume(name, mixed);
      }
      responses.onNext(dev.weightsync.proto.v1.ResumeEngineResponse.newBuilder().setEngine(name)
          .setState(s.state()).setMessage(s.lastError()).build());
      responses.onCompleted();
    } catch (IllegalStateException e) {
      responses.onError(io.grpc.Status.FAILED_PRECONDITION.withDescription(e.getMessage())
          .asException());
    }
  }

  @Override
  public void getStatus(GetStatusRequest request, StreamObserver<GetStatusResponse> responses) {
    GetStatusResponse.Builder b = GetStatusResponse.newBuilder()
        .setRole(role)
        .setFormat(format)
        .setDevice(quantizer.device())
        .setDeviceNote(deviceNote.get())
        .setLastVersion(coordinator.lastLoaded())
        .setUptimeSeconds((System.nanoTime() - startNanos) / 1e9);
    for (VersionCoordinator.Progress p : coordinator.progress()) {
      b.addInProgress(VersionProgress.newBuilder()
          .setWeightVersion(p.version())
          .setPartCount(p.partCount())
          .addAllPartsCommitted(p.committed())
          .addAllPartsReceiving(p.receiving()));
    }
    java.util.Set<String> down = unreachable.get();
    for (EngineAdapter e : coordinator.engines()) {
      EngineState s = e.state();
      boolean isDown = down.contains(e.name());
      b.addEngines(EngineStatus.newBuilder()
          .setEngine(s.engine())
          .setState(isDown ? EngineState.UNREACHABLE : s.state())
          .setLoadedVersion(s.loadedVersion())
          .setLastError(isDown ? "not answering /health (last known state " + s.state()
              + (s.lastError().isEmpty() ? "" : "; " + s.lastError()) + ")" : s.lastError())
          .setOutOfDate(coordinator.outOfDate(e.name()) != null));
    }
    responses.onNext(b.build());
    responses.onCompleted();
  }
}
