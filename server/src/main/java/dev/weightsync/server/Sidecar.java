package dev.weightsync.server;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.sun.net.httpserver.HttpServer;
import dev.weightsync.core.quant.CpuQuantizer;
import dev.weightsync.core.quant.Format;
import dev.weightsync.core.quant.QuantScheme;
import dev.weightsync.core.quant.Quantizer;
import dev.weightsync.core.quant.TensorSelector;
import dev.weightsync.server.config.SidecarConfig;
import dev.weightsync.server.engine.EngineAdapter;
import dev.weightsync.server.engine.SglangAdapter;
import dev.weightsync.server.ingest.WeightSyncService;
import dev.weightsync.server.pipeline.VersionCoordinator;
import dev.weightsync.server.stage.StagingArea;
import io.grpc.Server;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.netty.NettyServerBuilder;
import io.grpc.protobuf.services.HealthStatusManager;
import io.grpc.protobuf.services.ProtoReflectionServiceV1;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.logging.Logger;

/**
 * The sidecar process: the gRPC server (WeightSync, health, reflection), the quantizer, the
 * staging area, the engines, and an HTTP port for {@code /healthz}.
 */
public final class Sidecar implements AutoCloseable {

  private static final Logger LOG = Logger.getLogger(Sidecar.class.getName());

  private final SidecarConfig config;
  private final Quantizer quantizer;
  private final VersionCoordinator coordinator;
  private final ExecutorService workers;
  private final HealthStatusManager health = new HealthStatusManager();
  private final Server server;
  private final StagingArea staging;
  private final QuantScheme scheme;
  private HttpServer http;

  public Sidecar(SidecarConfig config) throws IOException {
    this.config = config;
    JsonNode engineConfig = config.quantizationConfig() == null ? null
        : new ObjectMapper().readTree(Files.readString(config.quantizationConfig()));
    Format format = config.outputFormat();
    if (format == null && engineConfig == null) {
      format = Format.FP8_BLOCK;
    }
    this.scheme = QuantScheme.resolve(format, config.groupSize(), engineConfig);
    ObjectNode baseConfig = engineConfig instanceof ObjectNode o && !o.has("quant_method")
        ? o.deepCopy() : new ObjectMapper().createObjectNode();
    this.staging = new StagingArea(config.stagingDir(), config.keepVersions());
    String adminKey = config.sglangAdminKeyFile() != null
        ? Files.readString(config.sglangAdminKeyFile()).trim() : config.sglangAdminKey();
    List<EngineAdapter> engines = new ArrayList<>();
    for (String url : config.sglangUrls()) {
      engines.add(new SglangAdapter(url, adminKey, config.engineTimeout(), config.engineRetries(),
          config.pauseMode(), config.resumeAfterFailedLoad(), config.engineBackoff()));
    }
    this.quantizer = new CpuQuantizer(config.effectiveThreads());
    this.coordinator = new VersionCoordinator(staging, scheme, baseConfig, engines,
        config.partTimeout());
    AtomicInteger n = new AtomicInteger();
    this.workers = Executors.newFixedThreadPool(Math.max(4, config.effectiveThreads() * 2), r -> {
      Thread t = new Thread(r, "weightsync-ingest-" + n.incrementAndGet());
      t.setDaemon(true);
      return t;
    });
    WeightSyncService service = new WeightSyncService(coordinator, quantizer,
        new TensorSelector(scheme), WeightSyncService.toProto(scheme.format()),
        config.maxOpenTensors(), workers, "both", "");
    this.server = NettyServerBuilder.forPort(config.port())
        .maxInboundMessageSize(8 << 20)
        // A fixed HTTP/2 window (no BDP auto-tuning): what Netty buffers per stream stays bounded
        // while our manual flow control holds a sender back.
        .flowControlWindow(4 << 20)
        .addService(service)
        .addService(health.getHealthService())
        .addService(ProtoReflectionServiceV1.newInstance())
        .build();
  }

  public Sidecar start() throws IOException {
    server.start();
    if (config.metricsPort() >= 0) {
      http = HttpServer.create(new InetSocketAddress(config.metricsPort()), 0);
      http.createContext("/healthz", ex -> {
        byte[] body = "ok\n".getBytes(StandardCharsets.UTF_8);
        ex.sendResponseHeaders(200, body.length);
        try (OutputStream out = ex.getResponseBody()) {
          out.write(body);
        }
      });
      http.start();
    }
    health.setStatus("", ServingStatus.SERVING);
    health.setStatus("weightsync.v1.WeightSync", ServingStatus.SERVING);
    LOG.info(() -> "weightsync serving " + scheme.format() + " on port " + port() + " ("
        + quantizer.device() + "), staging in " + staging.root() + ", engines "
        + config.sglangUrls());
    return this;
  }

  /** The gRPC port (the real one when configured as 0). */
  public int port() {
    return server.getPort();
  }

  public int httpPort() {
    return http == null ? -1 : http.getAddress().getPort();
  }

  public QuantScheme scheme() {
    return scheme;
  }

  public StagingArea staging() {
    return staging;
  }

  public void awaitTermination() throws InterruptedException {
    server.awaitTermination();
  }

  @Override
  public void close() {
    health.enterTerminalState();
    server.shutdown();
    try {
      if (!server.awaitTermination(10, TimeUnit.SECONDS)) {
        server.shutdownNow();
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      server.shutdownNow();
    }
    if (http != null) {
      http.stop(0);
    }
    coordinator.close();
    workers.shutdownNow();
    quantizer.close();
  }
}
