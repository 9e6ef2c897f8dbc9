package dev.weightsync.cli;

import dev.weightsync.core.quant.Format;
import dev.weightsync.core.quant.QuantScheme;
import dev.weightsync.server.Sidecar;
import dev.weightsync.server.config.ConfigLoader;
import dev.weightsync.server.config.OutputScheme;
import dev.weightsync.server.config.Role;
import dev.weightsync.server.config.SidecarConfig;
import dev.weightsync.server.engine.EngineFormats;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
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

  @Option(names = "--check-config", description = "Load and validate the configuration (file, environment, flags), print it and exit.")
  boolean checkConfig;

  /** The configuration keys given as flags, with their values. */
  Map<String, Object> flags() {
    return ConfigOptions.given(spec);
  }

  @picocli.CommandLine.Spec CommandSpec spec;

  @Override
  public Integer call() throws Exception {
    SidecarConfig cfg;
    QuantScheme scheme;
    try {
      cfg = ConfigLoader.load(config, System.getenv(), flags());
      scheme = OutputScheme.resolve(cfg, OutputScheme.engineConfig(cfg));
      EngineFormats.check(scheme, cfg.sglangUrls(), cfg.vllmUrls());
    } catch (IllegalArgumentException e) {
      throw new picocli.CommandLine.ParameterException(spec.commandLine(), e.getMessage());
    }
    if (checkConfig) {
      System.out.println("configuration OK: " + cfg);
      System.out.println("stages " + scheme.format() + (scheme.format() == Format.INT4_GROUP
          ? " with group size " + scheme.groupSize() : ""));
      return 0;
    }
    if (cfg.sglangUrls().isEmpty() && cfg.vllmUrls().isEmpty() && cfg.role() != Role.TRAINER) {
      System.err.println("warning: no engine configured (--sglang-url, --vllm-url): versions are"
          + " staged in "
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
