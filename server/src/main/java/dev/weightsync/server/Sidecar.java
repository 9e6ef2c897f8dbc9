package dev.weightsync.server;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.weightsync.client.ClientTls;
import dev.weightsync.client.WireLimits;
import dev.weightsync.core.quant.QuantScheme;
import dev.weightsync.core.quant.Quantizer;
import dev.weightsync.core.quant.TensorSelector;
import dev.weightsync.server.config.GpuFailure;
import dev.weightsync.server.config.OutputScheme;
import dev.weightsync.server.config.Policy;
import dev.weightsync.server.config.RelayTarget;
import dev.weightsync.server.config.Role;
import dev.weightsync.server.config.SidecarConfig;
import dev.weightsync.server.engine.EngineAdapter;
import dev.weightsync.server.engine.EngineFormats;
import dev.weightsync.server.engine.EnginePaths;
import dev.weightsync.server.engine.EngineSet;
import dev.weightsync.server.engine.EngineState;
import dev.weightsync.server.engine.LeasedEngineAdapter;
import dev.weightsync.server.engine.SessionLedger;
import dev.weightsync.server.ingest.IngestLimits;
import dev.weightsync.server.ingest.WeightSyncService;
import dev.weightsync.server.metrics.SyncMetrics;
import dev.weightsync.server.pipeline.DeliveryPolicy;
import dev.weightsync.server.pipeline.PipelineClock;
import dev.weightsync.server.pipeline.VersionCoordinator;
import dev.weightsync.server.pipeline.VersionDelivery;
import dev.weightsync.server.quant.CudaIpcReader;
import dev.weightsync.server.quant.Quantizers;
import dev.weightsync.server.relay.RelayTargets;
import dev.weightsync.server.security.BearerTokenInterceptor;
import dev.weightsync.server.security.Caller;
import dev.weightsync.server.security.ServerTls;
import dev.weightsync.server.stage.StagingArea;
import dev.weightsync.server.stage.ReusableShards;
import dev.weightsync.server.stage.StagingSpace;
import io.grpc.ServerBuilder;
import io.grpc.protobuf.services.ProtoReflectionServiceV1;
import io.micrometer.core.instrument.binder.grpc.MetricCollectingServerInterceptor;
import io.micrometer.core.instrument.binder.jvm.ClassLoaderMetrics;
import io.micrometer.core.instrument.binder.jvm.JvmGcMetrics;
import io.micrometer.core.instrument.binder.jvm.JvmMemoryMetrics;
import io.micrometer.core.instrument.binder.jvm.JvmThreadMetrics;
import io.micrometer.core.instrument.binder.system.ProcessorMetrics;
import io.micrometer.core.instrument.binder.system.UptimeMetrics;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import java.io.IOException;
import java.nio.file.Files;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Consumer;
import java.util.logging.Logger;

/**
 * The sidecar process: the gRPC server (WeightSync, health, reflection), the quantizer, the
 * staging area, the engines, and an HTTP port for {@code /healthz}.
 */
public final class Sidecar implements AutoCloseable {

  private static final Logger LOG = Logger.getLogger(Sidecar.class.getName());
  /**
   * {@code -Dweightsync.staging.pageLock=false} keeps the GPU from locking kept files' pages, so
   * results go through its pinned slots: for measuring what the direct copies save
   * (tools/gpu/push-cuda.sh).
   */
  static final String PAGE_LOCK_PROPERTY = "weightsync.staging.pageLock";

  private final SidecarConfig config;
  private final Quantizer quantizer;
  private final VersionCoordinator coordinator;
  private final ExecutorService workers;
  private final Readiness readiness;
  private final GrpcListeners listeners;
  private final StagingArea staging;
  /** The staging filesystem's space, reserved by the parts being received. */
  private final StagingSpace space;
  private final QuantScheme scheme;
  private final PrometheusMeterRegistry registry;
  private final SyncMetrics metrics;
  private final List<EngineAdapter> engines;
  /** TLS of the gRPC port (reloading its files), or null for plaintext. */
  private final ServerTls tls;
  /** The engine-side sidecars, on a trainer-side sidecar; else null. */
  private final RelayTargets relay;
  private final WeightSyncService service;
  /** The metrics port, once started; null when disabled. */
  private OpsHttp http;
  private volatile String shutdownReport = "";
  /** The gRPC health service name that reports readiness. */
  public static final String SERVICE = "weightsync.v1.WeightSync";

  /** A sidecar listening where {@code config} says. */
  public Sidecar(SidecarConfig config) throws IOException {
    this(config, (ServerBuilder<?>) null);
  }

  /**
   * A sidecar whose gRPC services are served by {@code server} instead of on the configured
   * addresses: for protocol tests, grpc-java's in-process transport (the same services,
   * interceptors and limits without a socket). The metrics port and everything else as
   * configured.
   */
  public Sidecar(SidecarConfig config, ServerBuilder<?> server) throws IOException {
    this.config = config;
    JsonNode engineConfig = OutputScheme.engineConfig(config);
    this.scheme = OutputScheme.resolve(config, engineConfig);
    EngineFormats.check(scheme, config.sglangUrls(), config.vllmUrls());
    ObjectNode baseConfig = engineConfig instanceof ObjectNode o && !o.has("quant_method")
        ? o.deepCopy() : new ObjectMapper().createObjectNode();
    this.staging = new StagingArea(config.stagingDir(), config.keepVersions(),
        config.stagingPermissions(), config.stagingReuse());
    this.space = new StagingSpace(staging.root().toString(),
        StagingSpace.FileSystemSpace.of(staging.root()), config.stagingReserve(),
        staging.reusable());
    List<EngineAdapter> engines = engines(config, staging.root());
    this.engines = List.copyOf(engines);
    this.readiness = new Readiness(this.engines);
    boolean trainerSide = config.role() == Role.TRAINER;
    EngineSet deliverTo = EngineSet.of(engines);
    if (trainerSide) {
      String token = config.relayTokenFile() == null ? null
          : BearerTokenInterceptor.readTokens(config.relayTokenFile()).get(0);
      relay = new RelayTargets(config.relayTo().stream().map(RelayTarget::parse).toList(), token,
          ClientTls.of(config.relayTlsCa(), config.relayTlsCert(), config.relayTlsKey()),
          config.relayStreams());
      deliverTo = relay;
    } else {
      relay = null;
    }
    Quantizers.Choice choice;
    if (config.role() == Role.ENGINE && "auto".equals(config.device())) {
      // Relayed parts arrive quantized; leave the GPU to the engine beside us.
      choice = new Quantizers.Choice(new dev.weightsync.core.quant.CpuQuantizer(
          config.effectiveThreads()), "engine-side: parts arrive quantized; no GPU taken");
    } else {
      choice = Quantizers.create(config.device(), config.effectiveThreads(),
          config.gpuFailure() == GpuFailure.CPU,
          config.gpuSlots(), config.bytesGpuOrdinal());
    }
    this.quantizer = choice.quantizer();
    if (!"false".equals(System.getProperty(PAGE_LOCK_PROPERTY))) {
      staging.reusable().lockPagesWith(quantizer.pageLocker());
    }
    PipelineClock clock = PipelineClock.system();
    this.coordinator = new VersionCoordinator(staging, new VersionDelivery(staging, scheme,
        baseConfig, deliverTo, config.policy() == Policy.QUORUM
        ? DeliveryPolicy.quorum(config.quorum()) : DeliveryPolicy.ALL, clock),
        config.partTimeout(), trainerSide, clock);
    AtomicInteger n = new AtomicInteger();
    this.workers = Executors.newFixedThreadPool(Math.max(4, config.effectiveThreads() * 2), r -> {
      Thread t = new Thread(r, "weightsync-ingest-" + n.incrementAndGet());
      t.setDaemon(true);
      return t;
    });
    this.registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
    new JvmMemoryMetrics().bindTo(registry);
    new JvmGcMetrics().bindTo(registry);
    new JvmThreadMetrics().bindTo(registry);
    new ClassLoaderMetrics().bindTo(registry);
    new ProcessorMetrics().bindTo(registry);
    new UptimeMetrics().bindTo(registry);
    this.metrics = new SyncMetrics(registry, quantizer.device(), coordinator::inFlight,
        this::stagingBytes);
    coordinator.events(metrics);
    for (EngineAdapter e : engines) {
      metrics.engineState(e.name(),
          () -> readiness.unreachable(e.name()) ? EngineState.UNREACHABLE : e.state().state());
    }
    io.micrometer.core.instrument.Gauge.builder("weightsync.staging.reserved.bytes", space,
        StagingSpace::pending).description("Staging bytes reserved by parts being received and"
        + " not yet written").register(registry);
    io.micrometer.core.instrument.Gauge.builder("weightsync.staging.reusable.bytes",
        staging.reusable(), ReusableShards::bytes).description("Staging bytes of pruned versions'"
        + " shard files kept for the next version (staging-reuse)").register(registry);
    io.micrometer.core.instrument.FunctionCounter.builder("weightsync.staging.direct.bytes",
        staging.reusable(), ReusableShards::directBytes).description("Bytes the GPU copied"
        + " straight into kept shard files' page-locked pages (staging-reuse)").register(registry);
    CudaIpcReader ipc = CudaIpcReader.of(quantizer);
    if (ipc != null) {
      io.micrometer.core.instrument.Gauge.builder("weightsync.cuda.ipc.open.handles", ipc,
          CudaIpcReader::openHandles).description("Trainers' GPU allocations mapped by CUDA IPC now"
          + " (0 between parts)").register(registry);
    }
    this.service = new WeightSyncService(coordinator, quantizer,
        new TensorSelector(scheme), ProtoMapping.format(scheme.format()),
        new IngestLimits(config.maxOpenTensors(), config.maxTensorBytes(), config.maxVersionBytes(),
            config.maxTensors(), config.maxStreams(), config.maxStreamsPerCaller()),
        space, workers, config.role(), choice::note, metrics, config.headerTimeout(),
        config.partTimeout(), readiness::unreachableNow);
    tls = config.tlsCert() == null ? null : new ServerTls(config.tlsCert(), config.tlsKey(),
        config.tlsClientCa(), config.tlsReload());
    BearerTokenInterceptor auth = config.authTokenFile() == null ? null
        : new BearerTokenInterceptor(SERVICE, BearerTokenInterceptor.readTokens(config.authTokenFile()));
    Consumer<ServerBuilder<?>> services = b -> {
      b.intercept(new Caller()); // runs after the token check, which names the token
      if (auth != null) {
        b.intercept(auth);
      }
      b.intercept(new MetricCollectingServerInterceptor(registry))
          .maxInboundMessageSize(WireLimits.MAX_MESSAGE_BYTES)
          .addService(service)
          .addService(readiness.health().getHealthService())
          .addService(ProtoReflectionServiceV1.newInstance());
    };
    this.listeners = server != null ? GrpcListeners.of(server, services)
        : new GrpcListeners(config.listenAddresses(), tls == null ? null : tls.credentials(),
            services);
  }

  /**
   * The engines this sidecar drives: SGLang's and vLLM's, in that order, sharing one session
   * ledger (in the staging folder) and one view of the staging folder's path.
   */
  private static List<EngineAdapter> engines(SidecarConfig config, java.nio.file.Path root)
      throws IOException {
    SessionLedger ledger = new SessionLedger(root);
    EnginePaths paths = new EnginePaths(root, config.engineStagingDir());
    String sglangKey = config.sglangAdminKeyFile() != null
        ? Files.readString(config.sglangAdminKeyFile()).trim() : config.sglangAdminKey();
    String vllmKey = config.vllmApiKeyFile() != null
        ? Files.readString(config.vllmApiKeyFile()).trim() : config.vllmApiKey();
    List<EngineAdapter> engines = new ArrayList<>();
    for (String url : config.sglangUrls()) {
      engines.add(LeasedEngineAdapter.sglang(url, config.pauseMode().flag(), settings(config,
          sglangKey, ledger, paths)));
    }
    for (String url : config.vllmUrls()) {
      engines.add(LeasedEngineAdapter.vllm(url, config.vllmPauseMode().flag(), settings(config,
          vllmKey, ledger, paths)));
    }
    return engines;
  }

  private static LeasedEngineAdapter.Settings settings(SidecarConfig config, String key,
      SessionLedger ledger, EnginePaths paths) {
    return new LeasedEngineAdapter.Settings(key, config.engineTimeout(), config.engineRetries(),
        config.engineBackoff(), config.resumeAfterFailedLoad(), ledger, paths);
  }

  /** A bind failure said as such, naming the port and its option; other failures unchanged. */
  private static IOException inUse(IOException e, String what) {
    for (Throwable t = e; t != null; t = t.getCause()) {
      // the JDK says BindException; Netty's epoll transport an IOException with errno's text
      if (t instanceof java.net.BindException
          || String.valueOf(t.getMessage()).contains("Address already in use")) {
        return new IOException(what + " is already in use", e);
      }
    }
    return e;
  }

  public Sidecar start() throws IOException {
    try {
      listeners.start();
    } catch (IOException e) {
      throw inUse(e, config.listen().isEmpty() ? "the gRPC port " + config.port() + " (--port)"
          : "the gRPC address " + String.join(", ", config.listen()) + " (--listen)");
    }
    if (config.metricsPort() >= 0) {
      try {
        http = new OpsHttp(config.metricsPort(), readiness, registry);
      } catch (IOException e) {
        listeners.shutdownNow();
        throw inUse(e, "the metrics port " + config.metricsPort() + " (--metrics-port; -1 disables it)");
      }
    }
    readiness.start(staging);
    LOG.info(() -> "weightsync serving " + scheme.format() + " on " + listenersText() + " ("
        + quantizer.device() + ", role " + config.role() + ", "
        + (tls == null ? "plaintext" : (config.tlsClientCa() == null ? "TLS" : "mutual TLS")
            + " via " + ServerTls.provider()) + "), staging in " + staging.root()
        + (relay != null ? ", relaying to " + config.relayTo() + " (policy " + config.policy() + ")"
            : ", engines " + engines.stream().map(EngineAdapter::name).toList()));
    return this;
  }

  /** What {@link #close} had to do beyond a clean stop (empty when nothing), for the log. */
  public String shutdownReport() {
    return shutdownReport;
  }

  private double stagingBytes() {
    try {
      return staging.bytesOnDisk();
    } catch (IOException e) {
      return Double.NaN;
    }
  }

  /** How gRPC callers are authenticated, for the start-up line. */
  public String authText() {
    String mtls = config.tlsClientCa() != null ? "client certificates (mutual TLS)" : null;
    String token = config.authTokenFile() != null ? "a bearer token from "
        + config.authTokenFile() : null;
    if (mtls != null || token != null) {
      return (mtls != null && token != null ? mtls + " and " + token : mtls != null ? mtls : token)
          + " (gRPC health stays open)";
    }
    return config.insecure() ? "not authenticated (--insecure: anyone who reaches the port)"
        : "not authenticated (loopback and Unix sockets only)";
  }

  /** Where gRPC listens, the real port in place of 0. */
  public String listenersText() {
    return listeners.addresses().stream().map(a -> a.unix() || a.port() != 0 ? a.toString()
        : a.host() + ":" + port()).collect(java.util.stream.Collectors.joining(", "));
  }

  /** The gRPC port of the first TCP address (the real one when configured as 0); -1 if none. */
  public int port() {
    return listeners.port();
  }

  public int httpPort() {
    return http == null ? -1 : http.port();
  }

  public QuantScheme scheme() {
    return scheme;
  }

  public StagingArea staging() {
    return staging;
  }

  public void awaitTermination() throws InterruptedException {
    listeners.awaitTermination();
  }

  /**
   * Stops: health turns NOT_SERVING, new calls are refused, calls in flight get the grace period
   * to finish (a version being delivered completes its engine sessions, which always end with the
   * engine resumed or reported), then whatever is left is cancelled, which discards its parts.
   */
  @Override
  public void close() {
    long deadline = System.nanoTime() + config.shutdownGrace().toNanos();
    readiness.close();
    listeners.shutdown();
    try {
      if (!listeners.awaitTermination(config.shutdownGrace().toMillis())) {
        LOG.warning("calls still in flight after the shutdown grace period; cancelling them");
        listeners.shutdownNow();
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      listeners.shutdownNow();
    }
    if (http != null) {
      http.close();
    }
    shutdownReport = coordinator.close(Duration.ofNanos(Math.max(0, deadline - System.nanoTime())));
    service.close();
    workers.shutdownNow();
    staging.reusable().close(); // unlocks the kept files' pages while the GPU is still there
    quantizer.close();
    if (relay != null) {
      relay.close();
    }
    if (tls != null) {
      tls.close();
    }
  }
}
