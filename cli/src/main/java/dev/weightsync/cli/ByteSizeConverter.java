package dev.weightsync.cli;

import java.util.Locale;
import picocli.CommandLine.ITypeConverter;

/** Sizes such as {@code 512MiB}, {@code 5GiB}, {@code 1GB} or plain bytes. */
final class ByteSizeConverter implements ITypeConverter<Long> {

  @Override
  public Long convert(String value) {
    return parse(value);
  }

  static long parse(String value) {
    String v = value.trim().toUpperCase(Locale.ROOT);
    String[][] units = {{"KIB", "1024"}, {"MIB", "1048576"}, {"GIB", "1073741824"},
        {"KB", "1000"}, {"MB", "1000000"}, {"GB", "1000000000"}, {"B", "1"}};
    for (String[] u : units) {
      if (v.endsWith(u[0])) {
        double n = Double.parseDouble(v.substring(0, v.length() - u[0].length()).trim());
        return (long) (n * Long.parseLong(u[1]));
      }
    }
    return Long.parseLong(v);
  }

  static String format(long bytes) {
    if (bytes >= 1_000_000_000L) {
      return String.format(Locale.ROOT, "%.2f GB", bytes / 1e9);
    }
    if (bytes >= 1_000_000L) {
      return String.format(Locale.ROOT, "%.1f MB", bytes / 1e6);
    }
    return bytes + " B";
  }
}
