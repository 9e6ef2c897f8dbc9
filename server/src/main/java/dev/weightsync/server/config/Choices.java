package dev.weightsync.server.config;

import java.util.Arrays;
import java.util.List;
import java.util.Locale;

/**
 * The keys whose value is one of a few names ({@link Role}, {@link Policy}, {@link GpuFailure},
 * {@link PauseMode}, {@link VllmPauseMode}): each an enum whose constants, lower-cased, are the names. A name that is
 * none of them is refused at load, listing the ones allowed.
 */
final class Choices {
  private Choices() {}

  /** The name of {@code e} in configuration: its constant, lower-cased. */
  static String flag(Enum<?> e) {
    return e.name().toLowerCase(Locale.ROOT);
  }

  static <E extends Enum<E>> E parse(E[] values, String key, String name) {
    return Arrays.stream(values).filter(v -> flag(v).equals(name)).findFirst()
        .orElseThrow(() -> new IllegalArgumentException(key + " must be " + list(values)
            + ", got " + name));
  }

  private static String list(Enum<?>[] values) {
    List<String> names = Arrays.stream(values).map(Choices::flag).toList();
    return String.join(", ", names.subList(0, names.size() - 1)) + " or "
        + names.get(names.size() - 1);
  }
}
