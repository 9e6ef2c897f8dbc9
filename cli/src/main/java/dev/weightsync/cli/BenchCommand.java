package dev.weightsync.cli;

import picocli.CommandLine;
import picocli.CommandLine.Command;

/** {@code weightsync bench}: throughput measurements, each against a baseline run alongside. */
@Command(name = "bench", mixinStandardHelpOptions = true,
    description = "Measure throughput against a baseline measured in the same run.",
    subcommands = {BenchQuantizeCommand.class, BenchGpuCommand.class, BenchIngestCommand.class})
final class BenchCommand implements Runnable {
  @CommandLine.Spec CommandLine.Model.CommandSpec spec;

  @Override
  public void run() {
    spec.commandLine().usage(System.err);
  }
}
