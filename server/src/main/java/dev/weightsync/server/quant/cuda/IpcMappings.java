package dev.weightsync.server.quant.cuda;

import static jcuda.driver.JCudaDriver.cuIpcCloseMemHandle;
import static jcuda.driver.JCudaDriver.cuIpcOpenMemHandle;
import static jcuda.driver.JCudaDriver.cuMemGetAddressRange;

import java.util.HashMap;
import java.util.HexFormat;
import java.util.Map;
import java.util.concurrent.atomic.AtomicInteger;
import jcuda.CudaException;
import jcuda.driver.CUdeviceptr;
import jcuda.driver.CUipcMemHandle;
import jcuda.driver.CUipcMem_flags;

/**
 * Other processes' allocations mapped into the context by CUDA IPC handle. CUDA maps an
 * allocation once per context, so a mapping is shared by the sessions that hold it and unmapped
 * when the last lets go. The map is touched on the owner thread only (through
 * {@link CudaContext#call}).
 */
final class IpcMappings {

  /** An allocation of another process mapped here, and how many sessions hold it. */
  private static final class Mapping {
    final CUdeviceptr base;
    final long size;
    int users;

    Mapping(CUdeviceptr base, long size) {
      this.base = base;
      this.size = size;
    }
  }

  private final CudaContext cuda;
  /** By handle, in hex. */
  private final Map<String, Mapping> mapped = new HashMap<>();
  private final AtomicInteger open = new AtomicInteger();

  IpcMappings(CudaContext cuda) {
    this.cuda = cuda;
  }

  /** The key a handle is held under. */
  static String key(byte[] handle) {
    return HexFormat.of().formatHex(handle);
  }

  /**
   * Maps the allocation {@code handle} names, or counts one more holder of its mapping. A handle
   * CUDA refuses is the caller's error, not a GPU failure.
   */
  void hold(String key, byte[] handle) {
    cuda.call(() -> {
      Mapping m = mapped.get(key);
      if (m == null) {
        CUdeviceptr base = new CUdeviceptr();
        try {
          cuIpcOpenMemHandle(base, ipcHandle(handle),
              CUipcMem_flags.CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS);
        } catch (CudaException e) {
          throw new IllegalArgumentException("CUDA refused the IPC handle (" + e.getMessage()
              + "): it must name a live allocation of a process on " + cuda.gpuUuid());
        }
        long[] size = new long[1];
        cuMemGetAddressRange(new CUdeviceptr(), size, base);
        m = new Mapping(base, size[0]);
        mapped.put(key, m);
        open.incrementAndGet();
      }
      m.users++;
      return null;
    });
  }

  /** Where a held allocation is mapped, once the bucket is known to lie within it. */
  CUdeviceptr base(String key, long offset, long length) {
    return cuda.call(() -> {
      Mapping m = mapped.get(key);
      if (offset < 0 || length < 0 || offset + length > m.size || offset + length < 0) {
        throw new IllegalArgumentException("the bucket [" + offset + ", " + (offset + length)
            + ") does not lie within its " + m.size + "-byte allocation");
      }
      return m.base;
    });
  }

  /** One holder lets go; the last unmaps the allocation. */
  void release(String key) {
    cuda.call(() -> {
      Mapping m = mapped.get(key);
      if (--m.users == 0) {
        mapped.remove(key);
        open.decrementAndGet();
        cuIpcCloseMemHandle(m.base);
      }
      return null;
    });
  }

  /** Mappings open now: 0 between parts, unless one leaked. */
  int open() {
    return open.get();
  }

  /**
   * JCuda's CUipcMemHandle has no setter for its 64 bytes (it only receives handles from
   * cuIpcGetMemHandle), so they are set on its private field, which its native code reads.
   */
  private static CUipcMemHandle ipcHandle(byte[] bytes) {
    CUipcMemHandle h = new CUipcMemHandle();
    try {
      java.lang.reflect.Field f = CUipcMemHandle.class.getDeclaredField("reserved");
      f.setAccessible(true);
      f.set(h, bytes.clone());
    } catch (ReflectiveOperationException e) {
      throw new IllegalStateException("this JCuda's CUipcMemHandle has no 'reserved' field", e);
    }
    return h;
  }
}
