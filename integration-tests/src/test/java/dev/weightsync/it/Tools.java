package dev.weightsync.it;

import static org.junit.jupiter.api.Assertions.fail;

import java.util.Arrays;
import java.util.Set;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Assumptions;

/**
 * Tests that need a tool this machine may lack (Python modules, Prometheus, kubectl, Docker) skip
 * and say why; but a tool named in {@code -Dweightsync.requireTools=python,prometheus,kubectl}
 * (which .ci/run sets for what it installs) fails the test instead, so a skip cannot hide there.
 */
final class Tools {
  private Tools() {}

  static final String PYTHON = "python";
  static final String PROMETHEUS = "prometheus";
  static final String KUBECTL = "kubectl";
  static final String DOCKER = "docker";

  static void require(String tool, boolean available, String why) {
    if (available) {
      return;
    }
    if (required().contains(tool)) {
      fail(tool + " is missing, and -Dweightsync.requireTools names it: " + why);
    }
    Assumptions.abort("skipped: " + why);
  }

  static Set<String> required() {
    return Arrays.stream(System.getProperty("weightsync.requireTools", "").split(","))
        .map(String::trim).filter(s -> !s.isEmpty()).collect(Collectors.toSet());
  }
}
