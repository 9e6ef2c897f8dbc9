package dev.weightsync.cli;

import dev.weightsync.core.checkpoint.CheckpointComparison;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/** {@code weightsync compare}: two checkpoint folders, tensor by tensor. */
@Command(name = "compare", mixinStandardHelpOptions = true, versionProvider = Version.class,
    description = {"Compare two checkpoint folders tensor by tensor (name, dtype, shape, bytes) and"
        + " their quantization_config, as docs/quantization.md judges equality. Quantized tensors"
        + " that differ are also dequantized: how many weights differ, and by how much at most.",
        "Exit status: 0 identical, 1 different, 2 a folder could not be read (or a usage error)."},
    exitCodeListHeading = "%n")
final class CompareCommand implements Callable<Integer> {

  static final int SHOWN = 20;

  @Parameters(index = "0", paramLabel = "EXPECTED", description = "The reference folder.")
  Path expected;

  @Parameters(index = "1", paramLabel = "ACTUAL", description = "The folder to check.")
  Path actual;

  @Option(names = {"-q", "--quiet"}, description = "Print only the summary line.")
  boolean quiet;

  @Spec CommandSpec spec;

  @Override
  public Integer call() {
    PrintWriter out = spec.commandLine().getOut();
    CheckpointComparison.Result r;
    try {
      r = CheckpointComparison.compare(expected, actual);
    } catch (IOException | RuntimeException e) {
      spec.commandLine().getErr().println("error: " + e.getMessage());
      return 2;
    }
    if (!quiet) {
      r.differences().stream().limit(SHOWN).forEach(out::println);
      if (r.differences().size() > SHOWN) {
        out.println("... and " + (r.differences().size() - SHOWN) + " more");
      }
    }
    out.println(r.tensorsCompared() + " tensors compared, " + r.differences().size() + " differ");
    out.flush();
    return r.identical() ? 0 : 1;
  }
}
