package dev.weightsync.server.config;

import com.fasterxml.jackson.annotation.JsonCreator;
import com.fasterxml.jackson.annotation.JsonValue;

/** How SGLang's {@code pause_generation} treats requests in flight (the {@code pause-mode} key; sent as is). */
public enum PauseMode {
  /** SGLang's default: requests in flight are aborted. */
  ABORT,
  /** SGLang's {@code retract} mode. */
  RETRACT,
  /** SGLang's {@code in_place} mode. */
  IN_PLACE;

  /** The name in configuration. */
  @JsonValue
  public String flag() {
    return Choices.flag(this);
  }

  /** Refused at load with the names allowed. */
  @JsonCreator
  public static PauseMode of(String flag) {
    return Choices.parse(values(), "pause-mode", flag);
  }

  @Override
  public String toString() {
    return flag();
  }
}
