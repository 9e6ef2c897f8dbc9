package dev.weightsync.server.quant.cuda;

import static jcuda.driver.JCudaDriver.cuDeviceGet;
import static jcuda.driver.JCudaDriver.cuDeviceGetCount;
import static jcuda.driver.JCudaDriver.cuDeviceGetUuid;
import static jcuda.driver.JCudaDriver.cuInit;

import dev.weightsync.server.quant.DeviceQuantizer;
import dev.weightsync.server.quant.GpuDevices;
import java.util.ArrayList;
import java.util.List;
import jcuda.CudaException;
import jcuda.driver.CUdevice;
import jcuda.driver.CUuuid;
import jcuda.driver.JCudaDriver;

/**
 * The GPUs the CUDA driver shows this process (those of CUDA_VISIBLE_DEVICES, or of the
 * container's device claim), each opened as a {@link CudaQuantizer} with bands of
 * {@code bandBytes} in {@code slots} slots.
 */
public final class CudaDevices implements GpuDevices {

  private final long bandBytes;
  private final int slots;
  private final int cpuThreads;

  public CudaDevices(long bandBytes, int slots, int cpuThreads) {
    this.bandBytes = bandBytes;
    this.slots = slots;
    this.cpuThreads = cpuThreads;
  }

  /**
   * Listing needs no context: any thread may ask. A driver without devices lists none.
   *
   * @throws IllegalStateException when the driver cannot list them
   */
  @Override
  public List<String> uuids() {
    JCudaDriver.setExceptionsEnabled(true);
    try {
      cuInit(0);
      int[] count = new int[1];
      cuDeviceGetCount(count);
      List<String> uuids = new ArrayList<>();
      for (int i = 0; i < count[0]; i++) {
        CUdevice d = new CUdevice();
        cuDeviceGet(d, i);
        CUuuid u = new CUuuid();
        cuDeviceGetUuid(u, d);
        uuids.add(CudaContext.formatUuid(u.bytes));
      }
      return uuids;
    } catch (CudaException e) {
      if (String.valueOf(e.getMessage()).contains("CUDA_ERROR_NO_DEVICE")) {
        return List.of();
      }
      throw new IllegalStateException("the CUDA driver cannot list its devices: "
          + e.getMessage(), e);
    }
  }

  @Override
  public DeviceQuantizer open(int ordinal) {
    return new CudaQuantizer(ordinal, bandBytes, slots, cpuThreads);
  }
}
