package dev.weightsync.server.quant;

import java.util.List;

/**
 * The GPUs a sidecar can see, and how one is opened: the CUDA driver's in production
 * ({@code cuda.CudaDevices}); tests give others, so that choosing among several GPUs is tested
 * where there is none.
 */
public interface GpuDevices {

  /** The visible devices' UUIDs, by ordinal. */
  List<String> uuids();

  /**
   * Opens device {@code ordinal}: its own context, owner thread and slots.
   *
   * @throws IllegalStateException when it cannot be used
   */
  DeviceQuantizer open(int ordinal);
}
