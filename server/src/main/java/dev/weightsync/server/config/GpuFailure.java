package dev.weightsync.server.config;

import com.fasterxml.jackson.annotation.JsonCreator;
import com.fasterxml.jackson.annotation.JsonValue;

/** What a GPU failure on a tensor leads to (the {@code gpu-failure} key). */
public enum GpuFailure {
  /** The CPU quantizes it, and every later tensor, with the same bytes. */
  CPU,
  /** The part fails. */
  FAIL;

  /** The name in configuration. */
  @JsonValue
  public String flag() {
    return Choices.flag(this);
  }

  /** Refused at load with the names allowed. */
  @JsonCreator
  public static GpuFailure of(String flag) {
    return Choices.parse(values(), "gpu-failure", flag);
  }

  @Override
  public String toString() {
    return flag();
  }
}
