package dev.weightsync.server.ingest;

import dev.weightsync.core.quant.Quantizer;
import dev.weightsync.core.quant.TensorSelector;
import dev.weightsync.proto.v1.BucketDone;
import dev.weightsync.proto.v1.EngineStatus;
import dev.weightsync.proto.v1.Format;
import dev.weightsync.proto.v1.GetStatusRequest;
import dev.weightsync.proto.v1.GetStatusResponse;
import dev.weightsync.proto.v1.PhaseTimings;
import dev.weightsync.proto.v1.QuantizationError;
import dev.weightsync.proto.v1.UpdateWeightsCudaReply;
import dev.weightsync.proto.v1.UpdateWeightsResponse;
import dev.weightsync.proto.v1.VersionProgress;
import dev.weightsync.proto.v1.WeightSyncGrpc;
import dev.weightsync.server.ProtoMapping;
import dev.weightsync.server.config.Role;
import dev.weightsync.server.engine.EngineAdapter;
import dev.weightsync.server.engine.EngineState;
import dev.weightsync.server.engine.LeasedEngineAdapter;
import dev.weightsync.server.ingest.ZeroCopyRequests.Received;
import dev.weightsync.server.metrics.SyncMetrics;
import dev.weightsync.server.pipeline.PartResult;
import dev.weightsync.server.pipeline.VersionCoordinator;
import dev.weightsync.server.pipeline.VersionListener;
import dev.weightsync.server.pipeline.VersionOutcome;
import dev.weightsync.server.security.Caller;
import dev.weightsync.server.stage.StagingSpace;
import io.grpc.BindableService;
import io.grpc.ServerServiceDefinition;
import io.grpc.Status;
import io.grpc.StatusException;
import io.grpc.stub.ServerCallStreamObserver;
import io.grpc.stub.StreamObserver;
import java.util.concurrent.ExecutorService;
import java.util.logging.Logger;

/**
 * The {@code WeightSync} gRPC service. Each UpdateWeights stream is admitted against its caller's
 * share of the streams ({@link StreamAdmission}) and then handled by a {@link PartStream}, which
 * asks for the next message only when the previous one has been staged: manual flow control, so
 * a fast trainer can never make the sidecar buffer a model. Requests arrive through
 * {@link ZeroCopyRequests}: a chunk's bytes are Netty's own buffers until they are staged.
 */
public final class WeightSyncService implements WeightSyncGrpc.AsyncService, BindableService {

  private static final Logger LOG = Logger.getLogger(WeightSyncService.class.getName());

  private final VersionCoordinator coordinator;
  private final Quantizer quantizer;
  private final TensorSelector selector;
  private final Format format;
  private final IngestLimits limits;
  private final StreamAdmission admission;
  private final StagingSpace space;
  private final ExecutorService workers;
  private final long startNanos = System.nanoTime();
  private final Role role;
  private final java.util.function.Supplier<String> deviceNote;
  /** Engines not answering their health check now: the same check /readyz and gRPC health use. */
  private final java.util.function.Supplier<java.util.Set<String>> unreachable;
  private final SyncMetrics metrics;
  private final PartStream.Timeouts timeouts;
  private final java.util.concurrent.ScheduledExecutorService watchdog =
      java.util.concurrent.Executors.newSingleThreadScheduledExecutor(r -> {
        Thread t = new Thread(r, "weightsync-stream-watchdog");
        t.setDaemon(true);
        return t;
      });

  /**
   * @param headerTimeout silence allowed before a stream's first tensor data
   * @param idleTimeout silence allowed after it (the part timeout)
   */
  public WeightSyncService(VersionCoordinator coordinator, Quantizer quantizer,
      TensorSelector selector, Format format, IngestLimits limits, StagingSpace space,
      ExecutorService workers, Role role, java.util.function.Supplier<String> deviceNote,
      SyncMetrics metrics, java.time.Duration headerTimeout, java.time.Duration idleTimeout,
      java.util.function.Supplier<java.util.Set<String>> unreachable) {
    this.unreachable = unreachable;
    this.metrics = metrics;
    this.timeouts = new PartStream.Timeouts(headerTimeout, idleTimeout);
    this.space = space;
    this.admission = new StreamAdmission(limits.maxStreams(), limits.maxStreamsPerCaller());
    this.coordinator = coordinator;
    this.quantizer = quantizer;
    this.selector = selector;
    this.format = format;
    this.limits = limits;
    this.workers = workers;
    this.role = role;
    this.deviceNote = deviceNote;
  }

  /**
   * The service with UpdateWeights and UpdateWeightsCuda parsed by {@link ZeroCopyRequests};
   * GetStatus and ResumeEngine as generated.
   */
  @Override
  public ServerServiceDefinition bindService() {
    return ZeroCopyRequests.bind(WeightSyncGrpc.bindService(this),
        responses -> receive((ServerCallStreamObserver<UpdateWeightsResponse>) responses,
            new PartStream.Replies<>() {
              @Override
              public UpdateWeightsResponse result(UpdateWeightsResponse r) {
                return r;
              }

              @Override
              public UpdateWeightsResponse bucketDone(int index) {
                return null;
              }

              @Override
              public VersionListener listener(
                  ServerCallStreamObserver<UpdateWeightsResponse> call, PartResult part) {
                return WeightSyncService.listener(call, this::result, part.partIndex(),
                    part.relayed());
              }
            }),
        // an acknowledgement per CUDA bucket: the trainer may free or reuse a bucket's memory
        // once its BucketDone arrives, long before the version's result
        responses -> receive((ServerCallStreamObserver<UpdateWeightsCudaReply>) responses,
            new PartStream.Replies<>() {
              @Override
              public UpdateWeightsCudaReply result(UpdateWeightsResponse r) {
                return UpdateWeightsCudaReply.newBuilder().setResult(r).build();
              }

              @Override
              public UpdateWeightsCudaReply bucketDone(int index) {
                return UpdateWeightsCudaReply.newBuilder()
                    .setBucketDone(BucketDone.newBuilder().setIndex(index)).build();
              }

              @Override
              public VersionListener listener(
                  ServerCallStreamObserver<UpdateWeightsCudaReply> call, PartResult part) {
                return WeightSyncService.listener(call, this::result, part.partIndex(),
                    part.relayed());
              }
            }));
  }

  /** Admits one part's stream (or refuses it at once) and hands it to a {@link PartStream}. */
  private <T> StreamObserver<Received> receive(ServerCallStreamObserver<T> call,
      PartStream.Replies<T> replies) {
    call.disableAutoRequest();
    StreamAdmission.Slot slot;
    try {
      slot = admission.admit(Caller.current());
    } catch (StatusException e) {
      metrics.updateFailed("resource_exhausted", 0);
      call.onError(e.getStatus().asRuntimeException());
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
    PartReceiver receiver = new PartReceiver(coordinator, quantizer, selector, limits, space,
        metrics, role);
    return new PartStream<>(call, replies, receiver, format, metrics, timeouts, workers, watchdog)
        .start(slot);
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
          r.addEngines(ProtoMapping.engineResult(e));
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

  /** {@code weightsync resume}: an operator releases a paused engine on purpose. */
  @Override
  public void resumeEngine(dev.weightsync.proto.v1.ResumeEngineRequest request,
      StreamObserver<dev.weightsync.proto.v1.ResumeEngineResponse> responses) {
    String name = request.getEngine();
    LeasedEngineAdapter engine = coordinator.engines().stream()
        .filter(e -> e instanceof LeasedEngineAdapter && e.name().equals(name))
        .map(e -> (LeasedEngineAdapter) e).findFirst().orElse(null);
    if (engine == null) {
      responses.onError(io.grpc.Status.NOT_FOUND.withDescription("no engine '"
          + Refusals.printable(name) + "' here; engines: "
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
        .setRole(role.flag())
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
