package dev.weightsync.cli;

import picocli.CommandLine;
import picocli.CommandLine.Command;

/** {@code weightsync}: the sidecar and its tools. */
@Command(
    name = "weightsync",
    mixinStandardHelpOptions = true,
    versionProvider = Version.class,
    description = "Requantize BF16 weights into FP8/INT4 and load them into an inference engine.",
    subcommands = {ServeCommand.class, PushCommand.class, StatusCommand.class, HealthCommand.class,
        ResumeCommand.class, ConvertCommand.class, CompareCommand.class, DemoCommand.class, EngineCommand.class, BenchCommand.class})
public final class WeightsyncCommand implements Runnable {

  @CommandLine.Spec CommandLine.Model.CommandSpec spec;

  /** No command given: the usage, on stderr, as a usage error. */
  @Override
  public void run() {
    spec.commandLine().usage(System.err);
    throw new CommandLine.ParameterException(spec.commandLine(), "no command given");
  }

  public static void main(String[] args) {
    // One line per log record: time, level, logger, message (structured enough to grep and parse).
    if (System.getProperty("java.util.logging.SimpleFormatter.format") == null) {
      System.setProperty("java.util.logging.SimpleFormatter.format",
          "%1$tFT%1$tT.%1$tL %4$s %3$s: %5$s%6$s%n");
    }
    System.exit(newCommandLine().execute(args));
  }

  /** The command line with the error handling every subcommand shares. */
  static CommandLine newCommandLine() {
    CommandLine cl = new CommandLine(new WeightsyncCommand());
    ConfigOptions.add(cl.getSubcommands().get("serve").getCommandSpec(), null);
    ConfigOptions.add(cl.getSubcommands().get("convert").getCommandSpec(), ConfigOptions.SCHEME);
    // A usage error (a bad flag, a missing argument, an impossible count, a bad config value):
    // one line naming it and where to look, exit 2, no wall of usage text.
    cl.setParameterExceptionHandler((ex, args) -> {
      CommandLine line = ex.getCommandLine();
      line.getErr().println("error: " + ex.getMessage());
      if (!"no command given".equals(ex.getMessage())) {
        line.getErr().println("(see '" + line.getCommandSpec().qualifiedName() + " --help')");
      }
      return 2;
    });
    cl.setExecutionExceptionHandler((ex, line, parseResult) -> {
      if (ex instanceof CommandLine.ParameterException pe) {
        return line.getParameterExceptionHandler().handleParseException(pe, new String[0]);
      }
      line.getErr().println("error: " + ex.getMessage());
      if (System.getenv("WEIGHTSYNC_DEBUG") != null) {
        ex.printStackTrace(line.getErr());
      }
      return 1;
    });
    return cl;
  }
}
