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

  @Option(names = "--streams", defaultValue = "1", description = "Split the version into this many parts of about equal size, sent over parallel streams (default 1; only for a whole version, not with --parts).")
  int streams;

  @picocli.CommandLine.Spec picocli.CommandLine.Model.CommandSpec spec;

  @Override
  public Integer call() throws Exception {
    if (streams < 1) {
      throw new picocli.CommandLine.ParameterException(spec.commandLine(),
          "--streams must be at least 1");
    }
    if (streams > 1 && parts != 1) {
      throw new picocli.CommandLine.ParameterException(spec.commandLine(),
          "--streams splits a whole version into parts itself; it cannot be combined with --parts");
    }
    try (WeightSyncClient client = sidecar.connect()) {
      UpdateWeightsResponse r = streams > 1
          ? client.pushFolderParallel(modelDir, version, streams)
          : client.pushFolder(modelDir, version, part, parts);
      System.out.print(Reports.response(r));
      return 0;
    } catch (StatusRuntimeException e) {
      System.err.println("error: " + e.getStatus().getCode() + ": " + e.getStatus().getDescription());
      return 1;
    }
  }
}
