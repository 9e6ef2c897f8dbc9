package dev.weightsync.server.config;

import com.fasterxml.jackson.annotation.JsonCreator;
import com.fasterxml.jackson.annotation.JsonValue;
import java.util.Arrays;
import java.util.Locale;

/** What a sidecar does with the versions it receives (the {@code role} key). */
public enum Role {
  /** Beside a trainer: quantizes, and relays each part to the engine-side sidecars. */
  TRAINER,
  /** Beside an engine: takes relayed parts already quantized and drives its engines. */
  ENGINE,
  /** Both at once: quantizes and drives its engines (one host). */
  BOTH;

  /** The name in configuration and status: trainer, engine, both. */
  @JsonValue
  public String flag() {
    return name().toLowerCase(Locale.ROOT);
  }

  /** Refused at load with the names allowed. */
  @JsonCreator
  public static Role of(String flag) {
    return Arrays.stream(values()).filter(r -> r.flag().equals(flag)).findFirst()
        .orElseThrow(() -> new IllegalArgumentException(
            "role must be trainer, engine or both, got " + flag));
  }

  @Override
  public String toString() {
    return flag();
  }
}
