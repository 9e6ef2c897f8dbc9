package dev.weightsync.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.weightsync.core.checkpoint.CheckpointConverter;
import dev.weightsync.core.checkpoint.CheckpointWriter;
import dev.weightsync.core.checkpoint.FolderPermissions;
import dev.weightsync.core.quant.Quantizer;
import dev.weightsync.server.quant.Quantizers;
import dev.weightsync.core.quant.Format;
import dev.weightsync.core.quant.QuantScheme;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;

/** {@code weightsync convert}: a BF16 checkpoint folder to FP8 or INT4, offline. */
@Command(name = "convert", mixinStandardHelpOptions = true,
    description = "Quantize a BF16 Hugging Face checkpoint folder into FP8 or INT4, bit-exact with docs/quantization.md (the arithmetic and which tensors are quantized).")
final class ConvertCommand implements Callable<Integer> {

  @Option(names = "--input-dir", required = true, description = "The BF16 checkpoint folder.")
  Path inputDir;

  @Option(names = "--output-dir", required = true, description = "Where to write the quantized folder.")
  Path outputDir;

  @Option(names = "--threads", description = "Quantization threads (default: all cores).")
  Integer threads;

  @Option(names = "--max-shard-size", defaultValue = "5GiB", converter = ByteSizeConverter.class,
      description = "Largest output shard (default ${DEFAULT-VALUE}).")
  long maxShardBytes = CheckpointWriter.DEFAULT_MAX_SHARD_BYTES;

  @Option(names = "--device", defaultValue = "cpu",
      description = "Where to quantize: cpu (default), cuda, cuda:N or auto; the bytes are the same.")
  String device;

  @Option(names = "--output-mode", paramLabel = "OCTAL", defaultValue = "0750",
      description = "Mode of the output folder; files get the same bits without execute (default ${DEFAULT-VALUE}).")
  String outputMode;

  @Option(names = "--output-group", paramLabel = "GROUP",
      description = "Group (name or gid) given to the output folder and files (default: yours).")
  String outputGroup;

  @Option(names = "--force", description = "Replace a non-empty output folder (only once the new one is complete).")
  boolean force;

  private FolderPermissions permissions() {
    try {
      return new FolderPermissions(FolderPermissions.parseMode(outputMode), outputGroup);
    } catch (IllegalArgumentException e) {
      throw new ParameterException(spec.commandLine(), "--output-mode: " + e.getMessage());
    }
  }

  @Spec CommandSpec spec;

  /** From --format, --group-size and --quantization-config (options of ConfigOptions.SCHEME). */
  private QuantScheme scheme() throws java.io.IOException {
    Map<String, Object> given = ConfigOptions.given(spec);
    Format format;
    try {
      format = given.containsKey("format") ? Format.parse((String) given.get("format")) : null;
    } catch (IllegalArgumentException e) {
      throw new ParameterException(spec.commandLine(), "--format: " + e.getMessage());
    }
    Object config = given.get("quantization-config");
    return QuantScheme.resolve(format, (Integer) given.get("group-size"),
        config == null ? null : new ObjectMapper().readTree(Path.of((String) config).toFile()));
  }

  @Override
  public Integer call() throws Exception {
    QuantScheme scheme = scheme();
    int n = threads != null ? threads : Runtime.getRuntime().availableProcessors();
    PrintStream err = System.err;
    ProgressLine progress = new ProgressLine(err);
    long start = System.nanoTime();
    CheckpointConverter.Result r;
    Quantizers.Choice choice = Quantizers.create(device, n);
    if (!choice.note().isEmpty()) {
      err.println("note: " + choice.note());
    }
    try (Quantizer q = choice.quantizer()) {
      r = new CheckpointConverter(q, scheme, maxShardBytes, permissions())
          .convert(inputDir, outputDir, force, progress::tensorDone);
    }
    double seconds = (System.nanoTime() - start) / 1e9;
    for (String name : r.indivisible()) {
      err.println("warning: " + name + " stays unquantized: its row length is not a multiple of"
          + " the group size " + scheme.groupSize() + " (added to the config's ignore list)");
    }
    err.printf("converted %d tensors (%d quantized) from %s to %s as %s: %s in, %s out,"
            + " %.2f s (%.2f GB/s) on %s, %d CPU thread(s); max abs error %.3g, rel RMS error %.3g%n",
        r.tensorsIn(), r.quantized(), inputDir, outputDir, scheme.format(),
        ByteSizeConverter.format(r.bytesIn()), ByteSizeConverter.format(r.bytesOut()), seconds,
        r.bytesIn() / seconds / 1e9, choice.quantizer().device(), n, r.error().maxAbs(), r.error().relRms());
    return 0;
  }
}
