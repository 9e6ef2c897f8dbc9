package dev.weightsync.cli;

import dev.weightsync.client.WeightSyncClient;
import dev.weightsync.proto.v1.UpdateWeightsResponse;
import io.grpc.StatusRuntimeException;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code weightsync push}: send a checkpoint folder to a sidecar as one part of a version. */
@Command(name = "push",
    description = "Send the tensors of a checkpoint folder to a sidecar as (one part of) a weight version.")
final class PushCommand implements Callable<Integer> {

  // No mixinStandardHelpOptions: its -V/--version would clash with the weight --version flag.
  @Option(names = {"-h", "--help"}, usageHelp = true, description = "Show this help and exit.")
  boolean help;

  @picocli.CommandLine.Mixin SidecarConnection sidecar = new SidecarConnection();

  @Option(names = "--model-dir", required = true, description = "A BF16 checkpoint folder.")
  Path modelDir;

  @Option(names = "--version", required = true, description = "The weight version the engines will report.")
  String version;

  @Option(names = "--part", defaultValue = "0", description = "This part's index (default 0).")
  int part;

  @Option(names = "--parts", defaultValue = "1", description = "Parts in the version (default 1).")
  int parts;

  @Override
  public Integer call() throws Exception {
    try (WeightSyncClient client = sidecar.connect()) {
      UpdateWeightsResponse r = client.pushFolder(modelDir, version, part, parts);
      System.out.print(Reports.response(r));
      return 0;
    } catch (StatusRuntimeException e) {
      System.err.println("error: " + e.getStatus().getCode() + ": " + e.getStatus().getDescription());
      return 1;
    }
  }
}
