package dev.weightsync.cli;

import dev.weightsync.cli.engine.StandInEngine;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code weightsync engine}: the SGLang-compatible stand-in engine, on its own. */
@Command(name = "engine", mixinStandardHelpOptions = true,
    description = "Run the SGLang-compatible stand-in engine (for demos and tests; it loads folders with"
        + " weightsync's reader; the routes it speaks: docs/engines.md).")
final class EngineCommand implements Callable<Integer> {

  @Option(names = "--port", defaultValue = "30000", description = "HTTP port on 127.0.0.1 (default ${DEFAULT-VALUE}).")
  int port;

  @Option(names = "--admin-key", description = "Require this admin API key (Authorization: Bearer).")
  String adminKey;

  @Override
  public Integer call() throws Exception {
    try (StandInEngine engine = new StandInEngine(port, adminKey).start()) {
      System.err.println("stand-in engine listening on " + engine.url());
      new CountDownLatch(1).await();
    }
    return 0;
  }
}
