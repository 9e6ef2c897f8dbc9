package dev.weightsync.server.quant.cuda;

import static jcuda.driver.JCudaDriver.cuCtxCreate;
import static jcuda.driver.JCudaDriver.cuCtxDestroy;
import static jcuda.driver.JCudaDriver.cuCtxSetCurrent;
import static jcuda.driver.JCudaDriver.cuDeviceGet;
import static jcuda.driver.JCudaDriver.cuDeviceGetAttribute;
import static jcuda.driver.JCudaDriver.cuDeviceGetCount;
import static jcuda.driver.JCudaDriver.cuDeviceGetName;
import static jcuda.driver.JCudaDriver.cuDeviceGetUuid;
import static jcuda.driver.JCudaDriver.cuInit;
import static jcuda.driver.JCudaDriver.cuMemAlloc;
import static jcuda.driver.JCudaDriver.cuMemAllocHost;
import static jcuda.driver.JCudaDriver.cuMemFreeHost;
import static jcuda.driver.JCudaDriver.cuMemHostGetFlags;
import static jcuda.driver.JCudaDriver.cuMemHostRegister;
import static jcuda.driver.JCudaDriver.cuMemHostUnregister;
import static jcuda.driver.JCudaDriver.cuModuleLoadData;

import dev.weightsync.core.quant.Failures;
import dev.weightsync.core.tensor.PageLocker;
import dev.weightsync.server.quant.GpuFailureException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.locks.ReentrantReadWriteLock;
import java.util.logging.Logger;
import jcuda.CudaException;
import jcuda.Pointer;
import jcuda.driver.CUcontext;
import jcuda.driver.CUdevice_attribute;
import jcuda.driver.CUdevice;
import jcuda.driver.CUdeviceptr;
import jcuda.driver.CUmodule;
import jcuda.driver.CUuuid;
import jcuda.driver.JCudaDriver;

/**
 * One GPU's CUDA context and the one thread that owns it: every CUDA call of the quantizer runs
 * there ({@link #call}), as a context is current on one thread, but the page locks of staged
 * files, which take long and run on their callers' threads ({@link #lockPages}). Also the
 * device's name and UUID, the kernels' module (the PTX built for its compute capability),
 * page-locked host memory handed out to callers, and callers' memory page-locked for the device.
 */
final class CudaContext implements AutoCloseable {

  private static final Logger LOG = Logger.getLogger(CudaContext.class.getName());

  private final ExecutorService owner = Executors.newSingleThreadExecutor(r -> {
    Thread t = new Thread(r, "weightsync-cuda");
    t.setDaemon(true);
    return t;
  });
  private final int ordinal;
  /** Pinned memory handed out by {@link #allocatePinned}, freed on close. */
  private final List<Pointer> userPinned = new ArrayList<>();
  private String deviceName;
  private String gpuUuid;
  private CUcontext context;
  private String ptxArch;
  private int multiprocessors;
  private CUmodule module;
  /** Page locks run on their callers' threads; closing waits for them and stops later ones. */
  private final ReentrantReadWriteLock pageLocks = new ReentrantReadWriteLock();
  private boolean closing; // guarded by pageLocks

  /**
   * Opens device {@code ordinal} and loads the kernels' PTX.
   *
   * @throws RuntimeException (a CUDA error as {@link GpuFailureException}) when there is no such
   *     device or the driver refuses; the caller closes this then
   */
  CudaContext(int ordinal) {
    this.ordinal = ordinal;
    call(this::open);
  }

  private Void open() {
    JCudaDriver.setExceptionsEnabled(true);
    cuInit(0);
    int[] count = new int[1];
    cuDeviceGetCount(count);
    if (ordinal >= count[0]) {
      throw new IllegalStateException("no CUDA device " + ordinal + " (" + count[0] + " present)");
    }
    CUdevice device = new CUdevice();
    cuDeviceGet(device, ordinal);
    byte[] name = new byte[256];
    cuDeviceGetName(name, name.length, device);
    deviceName = new String(name, StandardCharsets.US_ASCII).trim().replace("\0", "");
    CUuuid uuid = new CUuuid();
    cuDeviceGetUuid(uuid, device);
    gpuUuid = formatUuid(uuid.bytes);
    CUcontext created = new CUcontext();
    cuCtxCreate(created, 0, device); // current on this (the owner) thread from now on
    context = created;
    int[] major = new int[1];
    int[] minor = new int[1];
    cuDeviceGetAttribute(major, CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device);
    cuDeviceGetAttribute(minor, CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device);
    ptxArch = ptxArch(major[0], minor[0]);
    int[] sms = new int[1];
    cuDeviceGetAttribute(sms, CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, device);
    multiprocessors = sms[0];
    module = load("quantize");
    return null;
  }

  /** The device's streaming multiprocessors. */
  int multiprocessors() {
    return multiprocessors;
  }

  /**
   * The PTX target for a compute capability: compute_90 from Hopper on, compute_89 on Ada (both
   * with the hardware's e4m3 conversions), compute_80 (A100 on, without them) otherwise.
   */
  static String ptxArch(int major, int minor) {
    if (major >= 9) {
      return "compute_90";
    }
    return major == 8 && minor >= 9 ? "compute_89" : "compute_80";
  }

  /** Loads {@code unit}'s PTX for this device into a module; owner thread only. */
  CUmodule load(String unit) {
    CUmodule m = new CUmodule();
    cuModuleLoadData(m, ptx(unit, ptxArch));
    return m;
  }

  /**
   * The PTX shipped in the jar ({@code kernels/<unit>.<arch>.ptx}), NUL-terminated for the
   * driver.
   */
  static byte[] ptx(String unit, String arch) {
    String name = "kernels/" + unit + "." + arch + ".ptx";
    try (InputStream in = CudaContext.class.getResourceAsStream("/" + name)) {
      if (in == null) {
        throw new IllegalStateException(name + " is missing from the classpath;"
            + " rebuild with ./mvnw package (server/src/main/cuda/build-ptx.sh)");
      }
      byte[] text = in.readAllBytes();
      return Arrays.copyOf(text, text.length + 1);
    } catch (IOException e) {
      throw new IllegalStateException(e);
    }
  }

  /** CUDA's spelling of a device UUID, as nvidia-smi -L prints it. */
  static String formatUuid(byte[] b) {
    StringBuilder s = new StringBuilder("GPU-");
    for (int i = 0; i < 16; i++) {
      if (i == 4 || i == 6 || i == 8 || i == 10) {
        s.append('-');
      }
      s.append(String.format("%02x", b[i] & 0xFF));
    }
    return s.toString();
  }

  int ordinal() {
    return ordinal;
  }

  String deviceName() {
    return deviceName;
  }

  String gpuUuid() {
    return gpuUuid;
  }

  /** The PTX target loaded, e.g. compute_90. */
  String ptxArch() {
    return ptxArch;
  }

  /** The kernels' module; owner thread only. */
  CUmodule module() {
    return module;
  }

  /**
   * Runs {@code c} on the thread that owns the context. A CUDA error becomes a
   * {@link GpuFailureException}; anything else is rethrown unchanged.
   */
  <T> T call(Callable<T> c) {
    try {
      return owner.submit(c).get();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException("interrupted while waiting for the GPU", e);
    } catch (ExecutionException e) {
      if (e.getCause() instanceof CudaException ce) {
        throw new GpuFailureException("CUDA error on cuda:" + ordinal + ": " + ce.getMessage(), ce);
      }
      throw Failures.unchecked(e);
    }
  }

  /** Device memory; owner thread only. */
  static CUdeviceptr alloc(long bytes) {
    CUdeviceptr p = new CUdeviceptr();
    cuMemAlloc(p, bytes);
    return p;
  }

  /** Page-locked host memory at {@code p}, as a little-endian buffer; owner thread only. */
  static ByteBuffer pinned(Pointer p, long bytes) {
    cuMemAllocHost(p, bytes);
    return p.getByteBuffer(0, bytes).order(ByteOrder.LITTLE_ENDIAN);
  }

  /** Page-locked host memory for a caller, freed on close. */
  ByteBuffer allocatePinned(long bytes) {
    return call(() -> {
      Pointer p = new Pointer();
      ByteBuffer b = pinned(p, bytes);
      synchronized (userPinned) {
        userPinned.add(p);
      }
      return b;
    });
  }

  /** Whether {@code window} lies in page-locked memory (the device can read it directly). */
  boolean isPinned(ByteBuffer window) {
    if (!window.isDirect()) {
      return false;
    }
    return call(() -> {
      try {
        cuMemHostGetFlags(new int[1], Pointer.to(window.slice()));
        return true;
      } catch (CudaException e) {
        return false; // pageable memory (a heap copy, a mapped file)
      }
    });
  }

  /**
   * Page-locks {@code region} ({@code cuMemHostRegister}, portable: every context may copy into
   * it) so that asynchronous copies from the device land in it directly; null when the driver
   * refuses (memory it cannot pin) or the context is closed. Runs on the calling thread with the
   * context made current there, not on the owner thread: pinning takes 30–70 ms a GiB of written
   * pages (H200 machine), which would hold up the queueing of every band behind it.
   */
  PageLocker.Locked lockPages(ByteBuffer region) {
    pageLocks.readLock().lock();
    try {
      if (context == null || closing) {
        return null;
      }
      cuCtxSetCurrent(context);
      Pointer at = Pointer.to(region);
      cuMemHostRegister(at, region.capacity(), JCudaDriver.CU_MEMHOSTREGISTER_PORTABLE);
      return () -> unlockPages(at);
    } catch (CudaException e) {
      LOG.fine(() -> "cuda:" + ordinal + " could not page-lock " + region.capacity() + " bytes ("
          + e.getMessage() + "); results are copied through the pinned slots there");
      return null;
    } finally {
      pageLocks.readLock().unlock();
    }
  }

  /** Unlocks memory locked by {@link #lockPages}; nothing once closed (that freed the locks). */
  private void unlockPages(Pointer at) {
    pageLocks.readLock().lock();
    try {
      if (!closing) {
        cuCtxSetCurrent(context);
        cuMemHostUnregister(at);
      }
    } catch (CudaException e) {
      LOG.warning("cuda:" + ordinal + " could not unlock staged pages: " + e.getMessage());
    } finally {
      pageLocks.readLock().unlock();
    }
  }

  /** Whether the context was created (close frees it then). */
  boolean opened() {
    return context != null;
  }

  /**
   * Frees the callers' pinned memory and destroys the context (which reclaims whatever else is
   * left), then stops the owner thread. Run what must be freed first with {@link #call} before.
   */
  @Override
  public void close() {
    pageLocks.writeLock().lock();
    try {
      closing = true;
    } finally {
      pageLocks.writeLock().unlock();
    }
    try {
      if (context != null) {
        call(() -> {
          synchronized (userPinned) {
            for (Pointer p : userPinned) {
              quietly(() -> cuMemFreeHost(p));
            }
          }
          quietly(() -> cuCtxDestroy(context));
          return null;
        });
      }
    } finally {
      owner.shutdownNow();
    }
  }

  /** Runs a CUDA call at close, where a broken context refuses calls and that is fine. */
  static void quietly(Runnable cudaCall) {
    try {
      cudaCall.run();
    } catch (CudaException e) {
      // closing: a broken context refuses the calls, and destroying it reclaims the memory
    }
  }
}
