package dev.weightsync.cli;

import dev.weightsync.client.Tensor;
import dev.weightsync.client.WeightSyncClient;
import dev.weightsync.core.checkpoint.CheckpointFolder;
import dev.weightsync.core.quant.AlreadyQuantized;
import dev.weightsync.core.tensor.TensorSpec;
import dev.weightsync.proto.v1.UpdateWeightsResponse;
import io.grpc.StatusRuntimeException;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;

/** {@code weightsync push}: send a checkpoint folder to a sidecar as one part of a version. */
@Command(name = "push",
    description = "Send the tensors of a BF16 checkpoint folder to a sidecar as (one part of) a weight"
        + " version; progress goes to stderr, the sidecar's answer to stdout.")
final class PushCommand implements Callable<Integer> {

  // No mixinStandardHelpOptions: its -V/--version would clash with the weight --version flag.
  @Option(names = {"-h", "--help"}, usageHelp = true, description = "Show this help and exit.")
  boolean help;

  @Mixin SidecarConnection sidecar = new SidecarConnection();

  @Option(names = "--model-dir", required = true, description = "A BF16 checkpoint folder.")
  Path modelDir;

  @Option(names = "--version", required = true, description = "The weight version the engines will report.")
  String version;

  @Option(names = "--part", defaultValue = "0", description = "This part's index, from 0 (default 0).")
  int part;

  @Option(names = "--parts", defaultValue = "1", description = "Parts in the version (default 1).")
  int parts;

  @Option(names = "--streams", defaultValue = "1", description = "Split the version into this many parts of about equal size, sent over parallel streams (default 1; only for a whole version, not with --parts).")
  int streams;

  @Option(names = "--chunk-size", defaultValue = "4MiB", converter = ByteSizeConverter.class,
      description = "Bytes per chunk message, at most 4MiB (default ${DEFAULT-VALUE}; docs/measurements/ compares sizes).")
  long chunkSize;

  @Spec CommandSpec spec;

  @Override
  public Integer call() throws IOException {
    checkCounts();
    try (CheckpointFolder folder = CheckpointFolder.open(modelDir)) {
      List<Tensor> tensors = sourceTensors(folder);
      String waiting = streams > 1 ? "all " + streams + " streams committed; waiting for the engines"
          : parts == 1 ? "version " + version + " committed; waiting for the engines"
          : "part " + part + " of " + parts + " committed; waiting for the other parts and the engines";
      PushProgress progress = new PushProgress(System.err, tensors, waiting);
      List<Tensor> counted = progress.counting(tensors);
      try (WeightSyncClient client = sidecar.connect((int) chunkSize)) {
        UpdateWeightsResponse r = streams > 1
            ? client.pushParallel(version, counted, streams)
            : client.push(version, part, parts, counted);
        System.out.print(Reports.response(r));
        return 0;
      } catch (StatusRuntimeException e) {
        System.err.println("error: " + CallErrors.describe(sidecar.target, e));
        return 1;
      }
    }
  }

  private void checkCounts() {
    if (parts < 1) {
      throw new ParameterException(spec.commandLine(), "--parts must be at least 1, not " + parts);
    }
    if (part < 0 || part >= parts) {
      throw new ParameterException(spec.commandLine(),
          "--part must be from 0 to " + (parts - 1) + " (--parts " + parts + "), not " + part);
    }
    if (chunkSize < 1 || chunkSize > WeightSyncClient.DEFAULT_CHUNK_BYTES) {
      throw new ParameterException(spec.commandLine(), "--chunk-size must be from 1 byte to 4MiB, not "
          + chunkSize);
    }
    if (streams < 1) {
      throw new ParameterException(spec.commandLine(), "--streams must be at least 1, not " + streams);
    }
    if (streams > 1 && parts != 1) {
      throw new ParameterException(spec.commandLine(),
          "--streams splits a whole version into parts itself; it cannot be combined with --parts");
    }
  }

  /** The folder's tensors, refused when the folder is already quantized (naming why). */
  private static List<Tensor> sourceTensors(CheckpointFolder folder) throws IOException {
    String why = AlreadyQuantized.configReason(folder.config());
    List<Tensor> tensors = new ArrayList<>();
    for (TensorSpec t : folder.tensors()) {
      why = why != null ? why : AlreadyQuantized.reason(t.name(), t.dtype());
      tensors.add(new Tensor(t, folder.source(t.name())));
    }
    if (why != null) {
      throw new IOException(folder.dir() + ": " + why);
    }
    return tensors;
  }
}
