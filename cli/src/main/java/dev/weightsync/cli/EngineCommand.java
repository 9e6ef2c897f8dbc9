package dev.weightsync.cli;

import dev.weightsync.cli.engine.StandInEngine;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code weightsync engine}: the stand-in engine (SGLang's routes, or vLLM's), on its own. */
@Command(name = "engine", mixinStandardHelpOptions = true,
    description = "Run the stand-in engine (for demos and tests; it loads folders with weightsync's"
        + " reader; the routes it speaks: docs/engines.md).")
final class EngineCommand implements Callable<Integer> {

  @Option(names = "--port", defaultValue = "30000", description = "HTTP port on 127.0.0.1 (default ${DEFAULT-VALUE}).")
  int port;

  @Option(names = "--admin-key", description = "Require this admin API key (Authorization: Bearer).")
  String adminKey;

  @Option(names = "--api", defaultValue = "sglang", paramLabel = "sglang|vllm",
      description = "Whose routes to speak: sglang (default) or vllm (the development routes of"
          + " vllm serve with the disk weight-transfer backend).")
  String api;

  @picocli.CommandLine.Spec picocli.CommandLine.Model.CommandSpec spec;

  @Override
  public Integer call() throws Exception {
    StandInEngine.Api which = switch (api) {
      case "sglang" -> StandInEngine.Api.SGLANG;
      case "vllm" -> StandInEngine.Api.VLLM;
      default -> throw new picocli.CommandLine.ParameterException(spec.commandLine(),
          "--api must be sglang or vllm, got " + api);
    };
    try (StandInEngine engine = new StandInEngine(port, adminKey, which).start()) {
      System.err.println("stand-in engine (" + api + " routes) listening on " + engine.url());
      new CountDownLatch(1).await();
    }
    return 0;
  }
}
