package dev.weightsync.server.config;

import java.util.List;
import java.util.Map;
import java.util.function.Function;
import java.util.stream.Collectors;

/**
 * Every configuration key, once: its name (the flag without dashes, the YAML key, and
 * {@code WEIGHTSYNC_<NAME>}), its kind, its default, and what it means. {@link ConfigLoader}
 * takes its defaults from here, {@code serve} builds its options from here, and a test checks
 * the README's table and {@link SidecarConfig}'s fields against it. Adding a key means one line
 * here and one field in {@link SidecarConfig} (and the README's row, which the test asks for).
 */
public final class ConfigSchema {
  private ConfigSchema() {}

  /** How a key's value is written on the command line. */
  public enum Kind {
    /** A whole number. */
    INT,
    /** A decimal number. */
    NUMBER,
    /** true or false; the flag alone means true. */
    FLAG,
    /** Repeatable; comma-separated in the environment. */
    LIST,
    /** Anything else: text, paths, durations (300s), byte sizes (64GiB). */
    TEXT
  }

  /**
   * @param defaultValue the default as the loader reads it, or null for none
   * @param shownDefault the default as documentation says it (e.g. "all cores" for 0), or null
   *     for none
   * @param label the option's parameter label in help, or null for the kind's
   * @param secret never printed (the printed configuration says "(set)")
   */
  public record Key(String name, Kind kind, String defaultValue, String shownDefault, String label,
      String doc, boolean secret) {}

  private static Key key(String name, Kind kind, String defaultValue, String doc) {
    return new Key(name, kind, defaultValue, defaultValue, null, doc, false);
  }

  private static Key key(String name, Kind kind, String defaultValue, String shown, String label,
      String doc) {
    return new Key(name, kind, defaultValue, shown, label, doc, false);
  }

  public static final List<Key> KEYS = List.of(
      key("port", Kind.INT, "50051", "gRPC port on 127.0.0.1; --listen for other addresses."),
      key("listen", Kind.LIST, null, null, "ADDRESS", "Where gRPC listens: HOST:PORT, or"
          + " unix:///PATH for a Unix-domain socket (mode 0660: the file's permissions decide who"
          + " may connect); repeatable; replaces --port. An address other hosts can reach needs"
          + " --auth-token-file or mutual TLS, or --insecure."),
      key("insecure", Kind.FLAG, "false", "Allow a --listen address other hosts can reach"
          + " without --auth-token-file or mutual TLS (anyone who reaches it can push weights)."),
      key("metrics-port", Kind.INT, "9464", "HTTP port for /metrics, /healthz and /readyz; 0 picks"
          + " a free one, -1 disables."),
      key("format", Kind.TEXT, null, "fp8-block", null, "Output format: fp8-block,"
          + " fp8-block-ue8m0, int4-group or bf16 (pass-through); without it the quantization"
          + " config decides, else fp8-block."),
      key("group-size", Kind.INT, null, "128", null,
          "INT4 group size (int4-group); the engines serve 32, 64 and 128."),
      key("quantization-config", Kind.TEXT, null, null, "FILE", "The served model's config.json:"
          + " its quantization_config decides format and rules."),
      key("staging-dir", Kind.TEXT, "/dev/shm/weightsync", "Where versions are staged for the"
          + " engine (a path it can read)."),
      key("staging-mode", Kind.TEXT, "0750", "0750", "OCTAL", "Mode of staged folders; files get"
          + " the same bits without execute (0750: the owner and the staging group read)."),
      key("staging-group", Kind.TEXT, null, null, "GROUP", "Group (name or gid) of staged"
          + " folders and files: one the engine's user belongs to (none: the sidecar's own)."),
      key("sglang-url", Kind.LIST, null, null, "URL", "An SGLang engine's base URL"
          + " (repeatable)."),
      new Key("sglang-admin-key", Kind.TEXT, null, null, null, "SGLang --admin-api-key, sent as"
          + " Authorization: Bearer (prefer --sglang-admin-key-file); never logged.", true),
      key("sglang-admin-key-file", Kind.TEXT, null, null, "FILE", "File holding the SGLang"
          + " admin API key (wins over --sglang-admin-key)."),
      key("vllm-url", Kind.LIST, null, null, "URL", "A vLLM engine's base URL (repeatable;"
          + " vllm serve with VLLM_SERVER_DEV_MODE=1 and the disk weight-transfer backend)."),
      new Key("vllm-api-key", Kind.TEXT, null, null, null, "vLLM's API key, sent as"
          + " Authorization: Bearer (prefer --vllm-api-key-file); never logged.", true),
      key("vllm-api-key-file", Kind.TEXT, null, null, "FILE", "File holding the vLLM API key"
          + " (wins over --vllm-api-key)."),
      key("vllm-pause-mode", Kind.TEXT, "abort", "vLLM /pause mode: abort, wait or keep."),
      key("engine-staging-dir", Kind.TEXT, null, null, "PATH", "The staging folder's path as"
          + " the engines see it, when they mount it at another path than staging-dir."),
      key("part-timeout", Kind.TEXT, "300s", "Time for all parts of a version to arrive, from"
          + " its first header; also how long a stream may fall silent before its commit."),
      key("header-timeout", Kind.TEXT, "30s", "A stream that sends no tensor data this long"
          + " after it opens is ended with DEADLINE_EXCEEDED and gives its slot back."),
      key("keep-versions", Kind.INT, "2", "Staged versions kept (the newest)."),
      key("threads", Kind.INT, "0", "all cores", null, "Quantization threads on the CPU; 0 means"
          + " all cores."),
      key("device", Kind.TEXT, "auto", "Where to quantize: auto (the GPU when there is one),"
          + " cpu, cuda (cuda:0), cuda:N, or cuda:all (every visible GPU: CUDA IPC buckets on the"
          + " GPU they name, each GPU opened on first use)."),
      key("gpu-failure", Kind.TEXT, "cpu", "When the GPU fails on a tensor (out of memory, a"
          + " launch error): cpu (redo it and later tensors on the CPU, identical bytes) or fail"
          + " (the version fails; the engine keeps its weights)."),
      key("gpu-slots", Kind.INT, "4", "Bands on the GPU at once, each a CUDA stream with about"
          + " 105 MiB of device and pinned host memory; more copy more results out side by"
          + " side."),
      key("bytes-gpu", Kind.TEXT, "least-busy", "With device cuda:all: the GPU that quantizes"
          + " weights sent as bytes, least-busy (fewest tensors in flight) or cuda:N."),
      key("auth-token-file", Kind.TEXT, null, null, "FILE", "Bearer tokens (one a line, #"
          + " comments) required on UpdateWeights and GetStatus."),
      key("pause-mode", Kind.TEXT, "abort", "pause_generation mode: abort, retract or"
          + " in_place."),
      key("resume-after-failed-load", Kind.FLAG, "false", "Resume an engine whose load failed"
          + " even when retried (false: leave it paused, no mixed weights served)."),
      key("engine-timeout", Kind.TEXT, "600s", "Timeout of each engine HTTP call."),
      key("engine-retries", Kind.INT, "2", "Retries of a failed engine call (load, flush)."),
      key("engine-backoff", Kind.TEXT, "200ms", "First wait between engine retries; it doubles,"
          + " up to 32 times this."),
      key("max-open-tensors", Kind.INT, "4", "Incomplete tensors at once per stream."),
      key("shutdown-grace", Kind.TEXT, "30s", "On SIGTERM, time for versions in flight to"
          + " finish before they are aborted."),
      key("role", Kind.TEXT, "both", "trainer (quantize, relay to engine-side sidecars), engine"
          + " (gather the parts relayed to it, stage, drive the local engine) or both"
          + " (colocated)."),
      key("relay-to", Kind.LIST, null, null, "TARGET", "With --role trainer: an engine-side"
          + " sidecar, HOST:PORT, or dns:///NAME:PORT for every address NAME resolves to, looked"
          + " up for each version (repeatable)."),
      key("relay-token-file", Kind.TEXT, null, null, "FILE", "A file whose first line is the"
          + " bearer token sent on relay calls."),
      key("relay-streams", Kind.INT, "4", "With --role trainer: connections each target's part"
          + " is sent over, as that many sub-parts (one connection tops out near one core's"
          + " speed)."),
      key("policy", Kind.TEXT, "all", "When some engines or relay targets fail a version: all"
          + " (the version fails) or quorum."),
      key("quorum", Kind.NUMBER, "0.5", "With --policy quorum: the fraction of engines or"
          + " targets that must load the version."),
      key("tls-cert", Kind.TEXT, null, null, "PEM", "Serve gRPC over TLS with this certificate"
          + " chain (with --tls-key); reloaded when the file changes."),
      key("tls-key", Kind.TEXT, null, null, "PEM", "The TLS certificate's private key"
          + " (PKCS#8)."),
      key("tls-client-ca", Kind.TEXT, null, null, "PEM", "Require client certificates that chain"
          + " to this CA (mutual TLS)."),
      key("tls-reload", Kind.TEXT, "60s", "How often the TLS files are checked for changes."),
      key("relay-tls-ca", Kind.TEXT, null, null, "PEM", "Relay over TLS, trusting this CA for"
          + " the engine-side sidecars."),
      key("relay-tls-cert", Kind.TEXT, null, null, "PEM", "Client certificate the relay"
          + " presents (mutual TLS; with --relay-tls-key)."),
      key("relay-tls-key", Kind.TEXT, null, null, "PEM", "The relay's client certificate key."),
      key("max-tensor-bytes", Kind.TEXT, "64GiB", "Largest tensor accepted."),
      key("max-version-bytes", Kind.TEXT, "4TiB", "Largest version, all parts together."),
      key("max-tensors", Kind.INT, "1000000", "Most tensors in a version."),
      key("max-streams", Kind.INT, "256", "UpdateWeights streams open at once."),
      key("max-streams-per-caller", Kind.INT, "64", "Of those, streams open at once from one"
          + " caller: its token or client certificate plus the name it declares."),
      key("staging-reserve", Kind.TEXT, "auto", "Free space the staging filesystem keeps;"
          + " tensors that would use it are refused. auto: the smaller of 256MiB and 5% of the"
          + " filesystem."),
      key("staging-reuse", Kind.FLAG, "false", "Write each version's shards into the files of the"
          + " version pruned last (same names), whose pages the filesystem already holds: about"
          + " twice as fast as fresh tmpfs pages. Holds one version's space between versions;"
          + " freed first when a tensor would not fit. Nothing may read a version once pruned."));

  private static final Map<String, Key> BY_NAME =
      KEYS.stream().collect(Collectors.toMap(Key::name, Function.identity()));

  /** The key named {@code name}, or null. */
  public static Key get(String name) {
    return BY_NAME.get(name);
  }
}
