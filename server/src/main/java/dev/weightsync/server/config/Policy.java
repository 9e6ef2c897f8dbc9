package dev.weightsync.server.config;

import com.fasterxml.jackson.annotation.JsonCreator;
import com.fasterxml.jackson.annotation.JsonValue;

/** When a version succeeds though some engines or relay targets failed it (the {@code policy} key). */
public enum Policy {
  /** Every engine must load it. */
  ALL,
  /** At least the {@code quorum} fraction of them must. */
  QUORUM;

  /** The name in configuration. */
  @JsonValue
  public String flag() {
    return Choices.flag(this);
  }

  /** Refused at load with the names allowed. */
  @JsonCreator
  public static Policy of(String flag) {
    return Choices.parse(values(), "policy", flag);
  }

  @Override
  public String toString() {
    return flag();
  }
}
