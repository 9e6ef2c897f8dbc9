package dev.weightsync.cli;

import dev.weightsync.server.Sidecar;
import dev.weightsync.server.config.ConfigLoader;
import dev.weightsync.server.config.SidecarConfig;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code weightsync serve}: the sidecar. */
@Command(name = "serve", mixinStandardHelpOptions = true,
    description = "Run the sidecar: receive BF16 weights over gRPC, requantize, stage, load into the engines."
        + " Flags override WEIGHTSYNC_* environment variables, which override --config."
        + " The engine contract (routes, update session, failures): docs/engines.md; the"
        + " arithmetic: docs/quantization.md.")
final class ServeCommand implements Callable<Integer> {

  @Option(names = "--config", description = "YAML or JSON config file (keys as the flags, e.g. staging-dir).")
  Path config;

  @Option(names = "--port", description = "gRPC port on 127.0.0.1 (default 50051); --listen for other addresses.")
  Integer port;

  @Option(names = "--listen", paramLabel = "ADDRESS", description = "Where gRPC listens: HOST:PORT, or unix:///PATH for a Unix-domain socket (mode 0660: the file's permissions decide who may connect); repeatable. Default: 127.0.0.1 on --port. An address other hosts can reach needs --auth-token-file or mutual TLS, or --insecure.")
  List<String> listen;

  @Option(names = "--metrics-port", description = "HTTP port for /healthz (default 9464; -1 disables).")
  Integer metricsPort;

  @Option(names = "--format", description = "fp8-block (default), fp8-block-ue8m0, int4-group or bf16.")
  String format;

  @Option(names = "--group-size", description = "INT4 group size (default 128).")
  Integer groupSize;

  @Option(names = "--quantization-config", paramLabel = "FILE",
      description = "The served model's config.json: its quantization_config decides format and rules.")
  Path quantizationConfig;

  @Option(names = "--staging-dir", description = "Where versions are staged for the engine (default /dev/shm/weightsync).")
  Path stagingDir;

  @Option(names = "--sglang-url", description = "An SGLang engine's base URL (repeatable).")
  List<String> sglangUrls;

  @Option(names = "--sglang-admin-key", description = "SGLang --admin-api-key (prefer --sglang-admin-key-file).")
  String sglangAdminKey;

  @Option(names = "--sglang-admin-key-file", description = "File holding the SGLang admin API key.")
  Path sglangAdminKeyFile;

  @Option(names = "--part-timeout", description = "Time for all parts of a version to arrive (default 300s).")
  String partTimeout;

  @Option(names = "--keep-versions", description = "Staged versions kept (default 2).")
  Integer keepVersions;

  @Option(names = "--threads", description = "Quantization threads (default: all cores).")
  Integer threads;

  @Option(names = "--pause-mode", description = "pause_generation mode: abort (default), retract, in_place.")
  String pauseMode;

  @Option(names = "--resume-after-failed-load", arity = "0..1",
      description = "Resume an engine whose load failed even when retried (default: leave it paused).")
  Boolean resumeAfterFailedLoad;

  @Option(names = "--engine-timeout", description = "Timeout of each engine HTTP call (default 600s).")
  String engineTimeout;

  @Option(names = "--engine-retries", description = "Retries of failed engine calls (default 2).")
  Integer engineRetries;

  @Option(names = "--engine-backoff", description = "First wait between engine retries, doubling (default 200ms).")
  String engineBackoff;

  @Option(names = "--max-open-tensors", description = "Incomplete tensors allowed at once per stream (default 4).")
  Integer maxOpenTensors;

  @Option(names = "--shutdown-grace", description = "On SIGTERM, time for in-flight versions to finish (default 30s).")
  String shutdownGrace;

  @Option(names = "--device", description = "Where to quantize: auto (default: the GPU when there is one), cpu, cuda, cuda:N.")
  String device;

  @Option(names = "--gpu-failure", description = "When the GPU fails on a tensor (out of memory, a launch error): cpu (default: redo it on the CPU, identical bytes) or fail (the version fails; the engine keeps its weights).")
  String gpuFailure;

  @Option(names = "--gpu-slots", description = "Bands on the GPU at once (default 4); each holds a CUDA stream and about 105 MiB of device and pinned host memory. More slots copy more results out side by side.")
  Integer gpuSlots;

  @Option(names = "--auth-token-file", description = "Bearer tokens (one a line) required on UpdateWeights and GetStatus.")
  Path authTokenFile;

  @Option(names = "--role", description = "trainer (quantize, relay to engine-side sidecars), engine (gather the parts relayed to it, stage, drive the local engine) or both (default: colocated).")
  String role;

  @Option(names = "--relay-to", paramLabel = "TARGET", description = "With --role trainer: an engine-side sidecar, HOST:PORT, or dns:///NAME:PORT for every address NAME resolves to, looked up for each version (repeatable).")
  List<String> relayTo;

  @Option(names = "--relay-token-file", description = "A file whose first line is the bearer token sent on relay calls.")
  Path relayTokenFile;

  @Option(names = "--policy", description = "When some engines or relay targets fail a version: all (default: the version fails) or quorum.")
  String policy;

  @Option(names = "--quorum", description = "With --policy quorum: the fraction of engines or targets that must load the version (default 0.5).")
  Double quorum;

  /** The flags that were given, by config key. */
  Map<String, Object> flags() {
    Map<String, Object> m = new LinkedHashMap<>();
    put(m, "port", port);
    put(m, "listen", listen);
    put(m, "metrics-port", metricsPort);
    put(m, "format", format);
    put(m, "group-size", groupSize);
    put(m, "quantization-config", quantizationConfig == null ? null : quantizationConfig.toString());
    put(m, "staging-dir", stagingDir == null ? null : stagingDir.toString());
    put(m, "sglang-url", sglangUrls);
    put(m, "sglang-admin-key", sglangAdminKey);
    put(m, "sglang-admin-key-file", sglangAdminKeyFile == null ? null : sglangAdminKeyFile.toString());
    put(m, "part-timeout", partTimeout);
    put(m, "keep-versions", keepVersions);
    put(m, "threads", threads);
    put(m, "pause-mode", pauseMode);
    put(m, "resume-after-failed-load", resumeAfterFailedLoad);
    put(m, "engine-timeout", engineTimeout);
    put(m, "engine-retries", engineRetries);
    put(m, "engine-backoff", engineBackoff);
    put(m, "max-open-tensors", maxOpenTensors);
    put(m, "shutdown-grace", shutdownGrace);
    put(m, "device", device);
    put(m, "gpu-failure", gpuFailure);
    put(m, "gpu-slots", gpuSlots);
    put(m, "auth-token-file", authTokenFile == null ? null : authTokenFile.toString());
    put(m, "role", role);
    put(m, "relay-to", relayTo);
    put(m, "relay-token-file", relayTokenFile == null ? null : relayTokenFile.toString());
    put(m, "policy", policy);
    put(m, "quorum", quorum);
    put(m, "max-tensor-bytes", maxTensorBytes);
    put(m, "max-version-bytes", maxVersionBytes);
    put(m, "max-tensors", maxTensors);
    put(m, "max-streams", maxStreams);
    put(m, "max-streams-per-caller", maxStreamsPerCaller);
    put(m, "header-timeout", headerTimeout);
    put(m, "staging-reserve", stagingReserve);
    put(m, "insecure", insecure);
    put(m, "staging-mode", stagingMode);
    put(m, "staging-group", stagingGroup);
    put(m, "tls-cert", tlsCert == null ? null : tlsCert.toString());
    put(m, "tls-key", tlsKey == null ? null : tlsKey.toString());
    put(m, "tls-client-ca", tlsClientCa == null ? null : tlsClientCa.toString());
    put(m, "tls-reload", tlsReload);
    put(m, "relay-tls-ca", relayTlsCa == null ? null : relayTlsCa.toString());
    put(m, "relay-tls-cert", relayTlsCert == null ? null : relayTlsCert.toString());
    put(m, "relay-tls-key", relayTlsKey == null ? null : relayTlsKey.toString());
    return m;
  }

  private static void put(Map<String, Object> m, String key, Object value) {
    if (value != null) {
      m.put(key, value);
    }
  }

  @Option(names = "--tls-cert", paramLabel = "PEM", description = "Serve gRPC over TLS with this certificate chain (with --tls-key); reloaded when the file changes.")
  Path tlsCert;

  @Option(names = "--tls-key", paramLabel = "PEM", description = "The TLS certificate's private key (PKCS#8).")
  Path tlsKey;

  @Option(names = "--tls-client-ca", paramLabel = "PEM", description = "Require client certificates that chain to this CA (mutual TLS).")
  Path tlsClientCa;

  @Option(names = "--tls-reload", description = "How often TLS files are checked for changes (default 60s).")
  String tlsReload;

  @Option(names = "--relay-tls-ca", paramLabel = "PEM", description = "Relay over TLS, trusting this CA for the engine-side sidecars.")
  Path relayTlsCa;

  @Option(names = "--relay-tls-cert", paramLabel = "PEM", description = "Client certificate the relay presents (mutual TLS; with --relay-tls-key).")
  Path relayTlsCert;

  @Option(names = "--relay-tls-key", paramLabel = "PEM", description = "The relay's client certificate key.")
  Path relayTlsKey;

  @Option(names = "--max-tensor-bytes", description = "Largest tensor accepted (default 64GiB).")
  String maxTensorBytes;

  @Option(names = "--max-version-bytes", description = "Largest version, all parts together (default 4TiB).")
  String maxVersionBytes;

  @Option(names = "--max-tensors", description = "Most tensors in a version (default 1000000).")
  Integer maxTensors;

  @Option(names = "--max-streams", description = "UpdateWeights streams open at once (default 256).")
  Integer maxStreams;

  @Option(names = "--max-streams-per-caller", description = "Of those, streams open at once from one caller: its token or client certificate plus the name it declares (default 64).")
  Integer maxStreamsPerCaller;

  @Option(names = "--header-timeout", description = "A stream that sends no tensor data this long after it opens is ended with DEADLINE_EXCEEDED (default 30s).")
  String headerTimeout;

  @Option(names = "--staging-reserve", description = "Free space the staging filesystem keeps; tensors that would use it are refused (default auto: the smaller of 256MiB and 5% of the filesystem).")
  String stagingReserve;

  @Option(names = "--insecure", arity = "0..1", fallbackValue = "true", description = "Allow a --listen address other hosts can reach without --auth-token-file or mutual TLS (default false: refused at start).")
  Boolean insecure;

  @Option(names = "--staging-mode", paramLabel = "OCTAL", description = "Mode of staged folders; files get the same bits without execute (default 0750: the owner and the staging group read).")
  String stagingMode;

  @Option(names = "--staging-group", paramLabel = "GROUP", description = "Group (name or gid) of staged folders and files: one the engine's user belongs to (default: the sidecar's own).")
  String stagingGroup;

  @picocli.CommandLine.Spec picocli.CommandLine.Model.CommandSpec spec;

  @Option(names = "--check-config", description = "Load and validate the configuration (file, environment, flags), print it and exit.")
  boolean checkConfig;

  @Override
  public Integer call() throws Exception {
    SidecarConfig cfg;
    try {
      cfg = ConfigLoader.load(config, System.getenv(), flags());
    } catch (IllegalArgumentException e) {
      throw new picocli.CommandLine.ParameterException(spec.commandLine(), e.getMessage());
    }
    if (checkConfig) {
      System.out.println("configuration OK: " + cfg);
      return 0;
    }
    if (cfg.sglangUrls().isEmpty() && !cfg.role().equals("trainer")) {
      System.err.println("warning: no engine configured (--sglang-url): versions are staged in "
          + cfg.stagingDir() + " but no engine is told to load them");
    }
    Sidecar sidecar = new Sidecar(cfg).start();
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      System.err.println("weightsync: shutting down (NOT_SERVING; in-flight versions get "
          + cfg.shutdownGrace().toSeconds() + " s)");
      sidecar.close();
      if (!sidecar.shutdownReport().isEmpty()) {
        System.err.println("weightsync: " + sidecar.shutdownReport());
      }
    }, "weightsync-shutdown"));
    System.err.println("weightsync: serving on port " + sidecar.port() + " (" + sidecar.listenersText()
        + "; callers: " + sidecar.authText() + ") with " + cfg);
    sidecar.awaitTermination();
    return 0;
  }
}
