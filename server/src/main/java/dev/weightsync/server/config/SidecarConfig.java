package dev.weightsync.server.config;

import com.fasterxml.jackson.annotation.JsonProperty;
import dev.weightsync.core.checkpoint.FolderPermissions;
import dev.weightsync.core.quant.Format;
import dev.weightsync.server.quant.MultiGpuQuantizer;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * The sidecar's configuration: one immutable, validated object. Loaded by {@link ConfigLoader}
 * from defaults, a YAML/JSON file, {@code WEIGHTSYNC_*} environment variables and flags, in that
 * order; keys are the flag names without dashes' prefix (e.g. {@code staging-dir}).
 */
public record SidecarConfig(
    /** gRPC port: the shorthand for listen 127.0.0.1:PORT when listen is not given. */
    @JsonProperty("port") int port,
    /** Addresses the gRPC server listens on: HOST:PORT or unix:///PATH (repeatable). */
    @JsonProperty("listen") List<String> listen,
    /** HTTP port for /healthz (and metrics); 0 picks a free port, -1 disables. */
    @JsonProperty("metrics-port") int metricsPort,
    /** Output format: fp8-block, fp8-block-ue8m0, int4-group or bf16. */
    @JsonProperty("format") String format,
    /** INT4 group size (int4-group only); null means 128 or the quantization config's. */
    @JsonProperty("group-size") Integer groupSize,
    /** The served model's config.json; its quantization_config decides format and rules. */
    @JsonProperty("quantization-config") Path quantizationConfig,
    /** Where versions are staged for the engine (the node's /dev/shm or a shared volume). */
    @JsonProperty("staging-dir") Path stagingDir,
    /** SGLang base URLs, one per engine. */
    @JsonProperty("sglang-url") List<String> sglangUrls,
    /** SGLang --admin-api-key; never logged. */
    @JsonProperty("sglang-admin-key") String sglangAdminKey,
    /** File holding the admin key (wins over sglang-admin-key). */
    @JsonProperty("sglang-admin-key-file") Path sglangAdminKeyFile,
    /** vLLM base URLs, one per engine (its disk weight-transfer backend). */
    @JsonProperty("vllm-url") List<String> vllmUrls,
    /** vLLM's API key, if the engine asks for one; never logged. */
    @JsonProperty("vllm-api-key") String vllmApiKey,
    /** File holding the vLLM API key (wins over vllm-api-key). */
    @JsonProperty("vllm-api-key-file") Path vllmApiKeyFile,
    /** How vLLM's /pause treats requests in flight. */
    @JsonProperty("vllm-pause-mode") VllmPauseMode vllmPauseMode,
    /** The staging folder's path as the engines see it, when they mount it elsewhere. */
    @JsonProperty("engine-staging-dir") String engineStagingDir,
    /** How long all parts of a version may take to arrive, from its first header. */
    @JsonProperty("part-timeout") Duration partTimeout,
    /** Staged versions kept on disk (the newest K). */
    @JsonProperty("keep-versions") int keepVersions,
    /** Quantization threads; 0 means all cores. */
    @JsonProperty("threads") int threads,
    /** pause_generation mode: abort, retract or in_place. */
    @JsonProperty("pause-mode") PauseMode pauseMode,
    /** After a load that failed even when retried: resume the engine anyway (default: stay paused). */
    @JsonProperty("resume-after-failed-load") boolean resumeAfterFailedLoad,
    /** Timeout of each engine HTTP call. */
    @JsonProperty("engine-timeout") Duration engineTimeout,
    /** Retries of a failed engine call (load, flush) before giving up. */
    @JsonProperty("engine-retries") int engineRetries,
    /** First wait between engine retries; it doubles per retry, up to 32 times this. */
    @JsonProperty("engine-backoff") Duration engineBackoff,
    /** Tensors being received at once per stream before flow control holds the sender back. */
    @JsonProperty("max-open-tensors") int maxOpenTensors,
    /** On SIGTERM: how long in-flight versions may take to finish before they are aborted. */
    @JsonProperty("shutdown-grace") Duration shutdownGrace,
    /** Where to quantize: auto (the GPU when there is one), cpu, cuda (cuda:0), cuda:N or cuda:all. */
    @JsonProperty("device") String device,
    /** When the GPU fails on a tensor: cpu (redo it on the CPU, same bytes) or fail (the version fails). */
    @JsonProperty("gpu-failure") GpuFailure gpuFailure,
    /** Bands on the GPU at once, each with a CUDA stream and ~105 MiB of device and pinned memory. */
    @JsonProperty("gpu-slots") int gpuSlots,
    /** With device cuda:all: the GPU that quantizes bytes, least-busy or cuda:N. */
    @JsonProperty("bytes-gpu") String bytesGpu,
    /** File of bearer tokens (one a line) required on UpdateWeights and GetStatus; none: open. */
    @JsonProperty("auth-token-file") Path authTokenFile,
    /** trainer (quantize and relay), engine (gather, stage, drive the engine) or both (colocated). */
    @JsonProperty("role") Role role,
    /** Engine-side sidecars a trainer-side one relays to: HOST:PORT or dns:///NAME:PORT (all addresses). */
    @JsonProperty("relay-to") List<String> relayTo,
    /** Token file for relay calls (the engine-side sidecars' auth-token-file holds it). */
    @JsonProperty("relay-token-file") Path relayTokenFile,
    /** Connections (and sub-parts) a part is relayed over to each engine-side sidecar. */
    @JsonProperty("relay-streams") int relayStreams,
    /** When some engines (or relay targets) fail a version: all (the version fails) or quorum. */
    @JsonProperty("policy") Policy policy,
    /** With policy quorum: the fraction of engines that must load a version for it to succeed. */
    @JsonProperty("quorum") double quorum,
    /** Server certificate chain (PEM): the gRPC port speaks TLS when set. */
    @JsonProperty("tls-cert") Path tlsCert,
    /** The server certificate's private key (PEM, PKCS#8). */
    @JsonProperty("tls-key") Path tlsKey,
    /** CA bundle (PEM) that client certificates must chain to: mutual TLS, required when set. */
    @JsonProperty("tls-client-ca") Path tlsClientCa,
    /** How often the TLS files are checked for changes (a rotated Kubernetes Secret). */
    @JsonProperty("tls-reload") Duration tlsReload,
    /** CA (PEM) the relay trusts for engine-side sidecars; relaying uses TLS when any relay-tls-* is set. */
    @JsonProperty("relay-tls-ca") Path relayTlsCa,
    /** Client certificate the relay presents to engine-side sidecars that require mutual TLS. */
    @JsonProperty("relay-tls-cert") Path relayTlsCert,
    /** That certificate's private key. */
    @JsonProperty("relay-tls-key") Path relayTlsKey,
    /** Bytes of one tensor (e.g. 64GiB). */
    @JsonProperty("max-tensor-bytes") long maxTensorBytes,
    /** Bytes of a whole version, all parts together. */
    @JsonProperty("max-version-bytes") long maxVersionBytes,
    /** Tensors of a whole version, all parts together. */
    @JsonProperty("max-tensors") int maxTensors,
    /** UpdateWeights streams open at once. */
    @JsonProperty("max-streams") int maxStreams,
    /** Of those, open at once from one caller (token or certificate, plus its declared name). */
    @JsonProperty("max-streams-per-caller") int maxStreamsPerCaller,
    /** Silence allowed on a stream before its first tensor data (after the header, or none). */
    @JsonProperty("header-timeout") Duration headerTimeout,
    /**
     * Bytes the staging filesystem must keep free: a tensor that would eat into them is refused.
     * -1 (the default, "auto") is the smaller of 256 MiB and 5% of the filesystem.
     */
    @JsonProperty("staging-reserve") long stagingReserve,
    /**
     * Keeps a pruned version's shard files for the next version's of the same names, whose bytes
     * then go into pages the filesystem already holds (faster than fresh tmpfs pages) at the cost
     * of one version's space held between versions.
     */
    @JsonProperty("staging-reuse") boolean stagingReuse,
    /** Allows a non-loopback listen address with neither auth-token-file nor mutual TLS. */
    @JsonProperty("insecure") boolean insecure,
    /** Octal mode of staged folders (files: the same bits without execute); default 0750. */
    @JsonProperty("staging-mode") String stagingMode,
    /** Group (name or gid) given to staged folders and files, e.g. the engine's; default none. */
    @JsonProperty("staging-group") String stagingGroup) {

  public SidecarConfig {
    Objects.requireNonNull(stagingDir, "staging-dir is required");
    Objects.requireNonNull(partTimeout, "part-timeout");
    Objects.requireNonNull(engineTimeout, "engine-timeout");
    Objects.requireNonNull(engineBackoff, "engine-backoff");
    Objects.requireNonNull(shutdownGrace, "shutdown-grace");
    sglangUrls = sglangUrls == null ? List.of() : List.copyOf(sglangUrls);
    vllmUrls = vllmUrls == null ? List.of() : List.copyOf(vllmUrls);
    listen = listen == null ? List.of() : List.copyOf(listen);
    for (String l : listen) {
      ListenAddress.parse(l);
    }
    relayTo = relayTo == null ? List.of() : List.copyOf(relayTo);
    if (role == Role.TRAINER && relayTo.isEmpty()) {
      throw new IllegalArgumentException("role trainer needs at least one relay-to target (the"
          + " engine-side sidecars)");
    }
    if (relayStreams < 1 || relayStreams > 64) {
      throw new IllegalArgumentException("relay-streams must be 1..64, got " + relayStreams);
    }
    if (role != Role.TRAINER && !relayTo.isEmpty()) {
      throw new IllegalArgumentException("relay-to is for role trainer (this sidecar's role is "
          + role + ")");
    }
    if (role == Role.TRAINER && !vllmUrls.isEmpty()) {
      throw new IllegalArgumentException("a trainer-side sidecar drives no engine: drop vllm-url"
          + " (give it to the engine-side sidecars)");
    }
    if (role == Role.TRAINER && !sglangUrls.isEmpty()) {
      throw new IllegalArgumentException("a trainer-side sidecar drives no engine: drop sglang-url"
          + " (give it to the engine-side sidecars)");
    }
    for (String t : relayTo) {
      RelayTarget.parse(t);
    }
    if ((tlsCert == null) != (tlsKey == null)) {
      throw new IllegalArgumentException("tls-cert and tls-key go together");
    }
    if (tlsClientCa != null && tlsCert == null) {
      throw new IllegalArgumentException("tls-client-ca (mutual TLS) needs tls-cert and tls-key");
    }
    Objects.requireNonNull(tlsReload, "tls-reload");
    if ((relayTlsCert == null) != (relayTlsKey == null)) {
      throw new IllegalArgumentException("relay-tls-cert and relay-tls-key go together");
    }
    if (maxTensorBytes < 1 || maxVersionBytes < 1 || maxTensors < 1 || maxStreams < 1
        || maxStreamsPerCaller < 1 || stagingReserve < -1) {
      throw new IllegalArgumentException("max-tensor-bytes, max-version-bytes, max-tensors,"
          + " max-streams and max-streams-per-caller must be positive, staging-reserve a byte"
          + " count or auto");
    }
    Objects.requireNonNull(headerTimeout, "header-timeout");
    if (headerTimeout.isNegative() || headerTimeout.isZero()) {
      throw new IllegalArgumentException("header-timeout must be positive, got " + headerTimeout);
    }
    if (!insecure && authTokenFile == null && tlsClientCa == null) {
      // the fields are not assigned yet in a compact constructor: the parameters are read
      List<ListenAddress> addresses = listen.isEmpty()
          ? List.of(new ListenAddress("127.0.0.1", port, null))
          : listen.stream().map(ListenAddress::parse).toList();
      for (ListenAddress a : addresses) {
        if (!a.unix() && !a.loopback()) {
          throw new IllegalArgumentException("listen " + a + " is reachable from other hosts,"
              + " but callers are not authenticated: give auth-token-file or mutual TLS"
              + " (tls-cert, tls-key, tls-client-ca), or say --insecure to serve it open");
        }
      }
    }
    // staging-mode and staging-group are checked now, not at the first version
    new FolderPermissions(FolderPermissions.parseMode(stagingMode == null ? "0750" : stagingMode),
        stagingGroup).checkGroup();
    if (!(quorum > 0 && quorum <= 1)) {
      throw new IllegalArgumentException("quorum must be a fraction in (0, 1], got " + quorum);
    }
    if (port < 0 || port > 65535) {
      throw new IllegalArgumentException("port must be 0..65535, got " + port);
    }
    if (keepVersions < 1) {
      throw new IllegalArgumentException("keep-versions must be at least 1, got " + keepVersions);
    }
    if (threads < 0) {
      throw new IllegalArgumentException("threads must be >= 0, got " + threads);
    }
    if (engineRetries < 0) {
      throw new IllegalArgumentException("engine-retries must be >= 0, got " + engineRetries);
    }
    if (maxOpenTensors < 1) {
      throw new IllegalArgumentException("max-open-tensors must be at least 1");
    }
    if (gpuSlots < 1 || gpuSlots > 64) {
      throw new IllegalArgumentException("gpu-slots must be 1 to 64, got " + gpuSlots);
    }
    // the fields are not set yet: check the parameters
    String d = device == null ? "auto" : device.trim().toLowerCase(java.util.Locale.ROOT);
    if (!d.matches("auto|cpu|cuda|cuda:[0-9]{1,4}|cuda:all")) {
      throw new IllegalArgumentException("device must be auto, cpu, cuda, cuda:N or cuda:all, got "
          + device);
    }
    if (bytesGpuOrdinal(bytesGpu) != MultiGpuQuantizer.LEAST_BUSY && !d.equals("cuda:all")) {
      throw new IllegalArgumentException("bytes-gpu " + bytesGpu + " chooses among the GPUs of"
          + " device cuda:all; device is " + d);
    }
    if (format != null) {
      Format.parse(format);
    }
    for (String url : sglangUrls) {
      if (!url.startsWith("http://") && !url.startsWith("https://")) {
        throw new IllegalArgumentException("sglang-url must start with http:// or https://: " + url);
      }
    }
    for (String url : vllmUrls) {
      if (!url.startsWith("http://") && !url.startsWith("https://")) {
        throw new IllegalArgumentException("vllm-url must start with http:// or https://: " + url);
      }
      if (sglangUrls.contains(url)) {
        throw new IllegalArgumentException(url + " is given as both sglang-url and vllm-url");
      }
    }
    if (engineStagingDir != null && !engineStagingDir.startsWith("/")) {
      throw new IllegalArgumentException("engine-staging-dir must be an absolute path, got "
          + engineStagingDir);
    }
  }

  /** The output format (null when the quantization config alone decides). */
  public Format outputFormat() {
    return format == null ? null : Format.parse(format);
  }

  public int effectiveThreads() {
    return threads == 0 ? Runtime.getRuntime().availableProcessors() : threads;
  }

  /** What staged folders and files are given: staging-mode and staging-group. */
  /** Where the gRPC server listens: the listen key, or loopback on port without it. */
  public List<ListenAddress> listenAddresses() {
    return listen.isEmpty() ? List.of(new ListenAddress("127.0.0.1", port, null))
        : listen.stream().map(ListenAddress::parse).toList();
  }

  public FolderPermissions stagingPermissions() {
    return new FolderPermissions(FolderPermissions.parseMode(stagingMode == null ? "0750" : stagingMode),
        stagingGroup);
  }

  /**
   * Every key as {@code key=value}, in {@link ConfigSchema}'s order and in the flags' units
   * (durations in s or ms, byte sizes in bytes); secrets say only "(set)".
   */
  @Override
  public String toString() {
    Map<String, Object> values = new java.util.HashMap<>();
    for (java.lang.reflect.RecordComponent c : SidecarConfig.class.getRecordComponents()) {
      try {
        values.put(c.getAccessor().getAnnotation(JsonProperty.class).value(),
            c.getAccessor().invoke(this));
      } catch (ReflectiveOperationException e) {
        throw new IllegalStateException(e);
      }
    }
    StringBuilder b = new StringBuilder("SidecarConfig[");
    for (ConfigSchema.Key k : ConfigSchema.KEYS) {
      Object v = values.get(k.name());
      b.append(b.length() > "SidecarConfig[".length() ? ", " : "").append(k.name()).append('=');
      Path keyFile = k.name().equals("sglang-admin-key") ? sglangAdminKeyFile
          : k.name().equals("vllm-api-key") ? vllmApiKeyFile : null;
      if (k.secret() || keyFile != null) {
        b.append(v == null && keyFile == null ? "none" : "(set)");
      } else if (v instanceof Duration d) {
        b.append(d.toMillis() % 1000 == 0 ? d.toSeconds() + "s" : d.toMillis() + "ms");
      } else if (v instanceof Long n && n == -1 && "auto".equals(k.defaultValue())) {
        b.append("auto");
      } else {
        b.append(v == null ? "none" : v);
      }
    }
    return b.append(']').toString();
  }

  /**
   * {@code bytes-gpu} as an ordinal, or {@link MultiGpuQuantizer#LEAST_BUSY}.
   *
   * @throws IllegalArgumentException when it is neither least-busy nor cuda:N
   */
  public int bytesGpuOrdinal() {
    return bytesGpuOrdinal(bytesGpu);
  }

  private static int bytesGpuOrdinal(String bytesGpu) {
    String b = bytesGpu == null ? "least-busy" : bytesGpu.trim().toLowerCase(java.util.Locale.ROOT);
    if (b.equals("least-busy")) {
      return MultiGpuQuantizer.LEAST_BUSY;
    }
    if (b.matches("cuda:[0-9]{1,4}")) {
      return Integer.parseInt(b.substring(5));
    }
    throw new IllegalArgumentException("bytes-gpu must be least-busy or cuda:N, got " + bytesGpu);
  }
}
