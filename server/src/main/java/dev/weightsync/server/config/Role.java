package dev.weightsync.server.config;

import com.fasterxml.jackson.annotation.JsonCreator;
import com.fasterxml.jackson.annotation.JsonValue;

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
    return Choices.flag(this);
  }

  /** Refused at load with the names allowed. */
  @JsonCreator
  public static Role of(String flag) {
    return Choices.parse(values(), "role", flag);
  }

  @Override
  public String toString() {
    return flag();
  }
}
