package dev.weightsync.server.config;

import com.fasterxml.jackson.annotation.JsonCreator;
import com.fasterxml.jackson.annotation.JsonValue;

/** How vLLM's {@code /pause} treats requests in flight (the {@code vllm-pause-mode} key; sent as is). */
public enum VllmPauseMode {
  /** vLLM's default: requests in flight are aborted. */
  ABORT,
  /** vLLM waits for requests in flight to complete. */
  WAIT,
  /** Requests are frozen in the queue and go on after {@code /resume}. */
  KEEP;

  /** The name in configuration. */
  @JsonValue
  public String flag() {
    return Choices.flag(this);
  }

  /** Refused at load with the names allowed. */
  @JsonCreator
  public static VllmPauseMode of(String flag) {
    return Choices.parse(values(), "vllm-pause-mode", flag);
  }

  @Override
  public String toString() {
    return flag();
  }
}
