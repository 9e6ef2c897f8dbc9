package dev.weightsync.server.quant;

/**
 * The GPU could not quantize a tensor (out of memory, a launch or copy error, a lost device): the
 * input was fine, so {@link FallbackQuantizer} may redo the tensor on the CPU.
 */
public final class GpuFailureException extends RuntimeException {
  public GpuFailureException(String message, Throwable cause) {
    super(message, cause);
  }
}
