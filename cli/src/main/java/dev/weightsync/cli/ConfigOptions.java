package dev.weightsync.cli;

import dev.weightsync.server.config.ConfigSchema;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Model.OptionSpec;
import picocli.CommandLine.ParseResult;

/**
 * Command-line options made from configuration keys ({@link ConfigSchema}): {@code --NAME},
 * typed by the key's kind, described by its doc and default. {@code serve} takes every key;
 * {@code convert} the ones that choose the arithmetic. So an option several commands take is
 * declared once, in the schema.
 */
final class ConfigOptions {
  private ConfigOptions() {}

  /** The keys that choose how a checkpoint is quantized. */
  static final List<String> SCHEME = List.of("format", "group-size", "quantization-config");

  /** Adds an option for each of {@code keys} (every key when null). */
  static void add(CommandSpec spec, Collection<String> keys) {
    for (ConfigSchema.Key k : ConfigSchema.KEYS) {
      if (keys != null && !keys.contains(k.name())) {
        continue;
      }
      String help = k.doc() + (k.shownDefault() == null ? "" : " Default: " + k.shownDefault()
          + ".");
      OptionSpec.Builder o = OptionSpec.builder("--" + k.name())
          .description(help.replace("%", "%%")) // picocli formats descriptions
          .paramLabel(k.label() != null ? k.label() : switch (k.kind()) {
            case INT, NUMBER -> "N";
            case FLAG -> "true|false";
            case LIST, TEXT -> "VALUE";
          });
      switch (k.kind()) {
        case INT -> o.type(Integer.class);
        case NUMBER -> o.type(Double.class);
        case FLAG -> o.type(Boolean.class).arity("0..1").fallbackValue("true");
        case LIST -> o.type(List.class).auxiliaryTypes(String.class);
        case TEXT -> o.type(String.class);
      }
      spec.addOption(o.build());
    }
  }

  /** The keys given on the command line, with their values. */
  static Map<String, Object> given(CommandSpec spec) {
    Map<String, Object> m = new LinkedHashMap<>();
    ParseResult parsed = spec.commandLine().getParseResult();
    for (ConfigSchema.Key k : ConfigSchema.KEYS) {
      OptionSpec o = spec.findOption("--" + k.name());
      if (o != null && parsed.hasMatchedOption(o)) {
        m.put(k.name(), o.getValue());
      }
    }
    return m;
  }
}
