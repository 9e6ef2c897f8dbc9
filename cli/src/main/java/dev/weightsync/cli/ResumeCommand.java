package dev.weightsync.cli;

import dev.weightsync.client.WeightSyncClient;
import dev.weightsync.proto.v1.ResumeEngineResponse;
import io.grpc.StatusRuntimeException;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** {@code weightsync resume}: an operator releases an engine the sidecar keeps paused. */
@Command(name = "resume", mixinStandardHelpOptions = true, versionProvider = Version.class,
    description = {"Resume an engine the sidecar keeps paused. One whose weights are untouched"
        + " (PAUSED_CLEAN) is resumed; one that may hold a mix of two versions (MAYBE_MIXED) only"
        + " with --accept-mixed — for the day no complete version can be loaded; it then serves"
        + " that mix (state SERVING_MIXED) until a version loads. Authenticated like push;"
        + " logged and counted by the sidecar. See docs/engines.md."})
final class ResumeCommand implements Callable<Integer> {

  @Mixin SidecarConnection sidecar = new SidecarConnection();

  @Option(names = "--engine", required = true, paramLabel = "URL",
      description = "The engine's base URL, as `weightsync status` shows it.")
  String engine;

  @Option(names = "--accept-mixed",
      description = "Resume even if its weights may be a mix of two versions.")
  boolean acceptMixed;

  @Override
  public Integer call() throws Exception {
    try (WeightSyncClient client = sidecar.connect()) {
      ResumeEngineResponse r = client.resumeEngine(engine, acceptMixed);
      System.out.println("engine " + r.getEngine() + ": " + r.getState()
          + (r.getMessage().isEmpty() ? "" : " — " + r.getMessage()));
      return 0;
    } catch (StatusRuntimeException e) {
      System.err.println("error: " + CallErrors.describe(sidecar.target, e));
      return 1;
    }
  }
}
