package dev.weightsync.server.quant.cuda;

import static jcuda.driver.JCudaDriver.cuMemcpyDtoH;

import dev.weightsync.core.quant.CpuQuantizer;
import dev.weightsync.core.quant.Failures;
import dev.weightsync.core.quant.QuantError;
import dev.weightsync.core.quant.Quantizer;
import dev.weightsync.core.quant.TensorPlan;
import dev.weightsync.core.tensor.PageLocker;
import dev.weightsync.core.tensor.TensorSink;
import dev.weightsync.core.tensor.TensorSource;
import dev.weightsync.core.tensor.TensorSpec;
import dev.weightsync.server.quant.DeviceQuantizer;
import dev.weightsync.server.quant.GpuUuids;
import dev.weightsync.server.quant.GpuFailureException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.Callable;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicInteger;
import jcuda.Pointer;
import jcuda.driver.CUdeviceptr;

/**
 * The spec's arithmetic on an NVIDIA GPU through JCuda's driver API, bit-identical to
 * {@link CpuQuantizer}.
 *
 * <p>The parts: a {@link CudaContext} (the device, and the one thread that makes every CUDA call),
 * a {@link SlotPool} (CUDA streams with their device and pinned buffers), the {@link Kernels}, and
 * the {@link BandPipeline} that runs a tensor through the slots band by band. Several tensors run
 * at once ({@link #quantizeAsync}), one worker thread each, so the copy in of one band, the kernel
 * of another and the copy out of a third overlap on the card's separate copy engines. Sources
 * already in pinned memory (see {@link #allocatePinned}) are copied to the device straight from
 * where they are; other sources are first copied into the slot's pinned buffer by the worker.
 *
 * <p>A trainer's CUDA IPC bucket ({@link #openSession}) takes the same path without the copy in:
 * the kernels read the bucket where it lies in the trainer's memory ({@link IpcMappings}), and
 * only the outputs are copied out. Its tensors run side by side like a stream's.
 *
 * <p>A CUDA error fails the tensor with a {@link GpuFailureException} and returns its slots.
 * Tensors the kernels do not take (pass-through, non-BF16, rows not a multiple of 8 elements,
 * group sizes other than 16, 32, 64, 128 and 256, rows wider than a band) go to the CPU
 * quantizer, with identical bytes.
 */
public final class CudaQuantizer implements DeviceQuantizer {

  private final CudaContext cuda;
  private final SlotPool slots;
  private final BandPipeline bands;
  private final IpcMappings ipc;
  private final ExecutorService workers;
  private final CpuQuantizer cpu;

  /**
   * Opens device {@code ordinal}, loads the kernels and allocates {@code slotCount} slots, each
   * taking bands of up to {@code bandBytes} of BF16 input.
   *
   * @throws IllegalStateException when no usable GPU, driver or kernel is there, or the slots do
   *     not fit in device or pinned memory (everything allocated so far is freed)
   */
  public CudaQuantizer(int ordinal, long bandBytes, int slotCount, int cpuThreads) {
    if (bandBytes < (1 << 20) || bandBytes > (1L << 30) || slotCount < 1) {
      throw new IllegalArgumentException("bands must be 1 MiB to 1 GiB and slots at least 1");
    }
    this.cpu = new CpuQuantizer(cpuThreads);
    AtomicInteger n = new AtomicInteger();
    this.workers = Executors.newFixedThreadPool(slotCount, r -> {
      Thread t = new Thread(r, "weightsync-cuda-band-" + n.incrementAndGet());
      t.setDaemon(true);
      return t;
    });
    CudaContext context = null;
    SlotPool pool = null;
    try {
      context = new CudaContext(ordinal);
      pool = new SlotPool(context, bandBytes, slotCount);
      this.bands = new BandPipeline(context, pool, new Kernels(context));
    } catch (RuntimeException | Error e) {
      if (pool != null) {
        pool.close();
      }
      if (context != null) {
        context.close();
      }
      workers.shutdownNow();
      cpu.close();
      String m = String.valueOf(e.getMessage());
      throw new IllegalStateException("CUDA device " + ordinal + " is not usable: "
          + e.getClass().getSimpleName() + ": " + m.lines().findFirst().orElse(""), e);
    }
    this.cuda = context;
    this.slots = pool;
    this.ipc = new IpcMappings(context);
  }

  @Override
  public String device() {
    return "cuda:" + cuda.ordinal();
  }

  public String deviceName() {
    return cuda.deviceName();
  }

  /**
   * Bytes of one slot for bands of {@code bandBytes}: taken on the device, and as much again in
   * page-locked host memory.
   */
  public static long slotBytes(long bandBytes) {
    return SlotPool.slotBytes(bandBytes);
  }

  /** The PTX target of the kernels loaded for this device, e.g. compute_90. */
  public String ptxArch() {
    return cuda.ptxArch();
  }

  /** This device's UUID as CUDA spells it, {@code GPU-} and 32 hex digits. */
  public String gpuUuid() {
    return cuda.gpuUuid();
  }

  @Override
  public boolean serves(String uuid) {
    return GpuUuids.same(uuid, cuda.gpuUuid());
  }

  @Override
  public String gpus() {
    return device() + " " + cuda.gpuUuid();
  }

  /**
   * Page-locked host memory of this quantizer's context, as a little-endian buffer. Sources in
   * such memory skip the copy into a slot: the device reads them directly. Freed on close.
   */
  public ByteBuffer allocatePinned(long bytes) {
    return cuda.allocatePinned(bytes);
  }

  /** Whether the GPU takes this plan (else the CPU does, with the same bytes). */
  private boolean onGpu(TensorPlan plan) {
    return Kernels.take(plan) && bands.fits(plan);
  }

  @Override
  public QuantError quantize(TensorPlan plan, TensorSource source, TensorSink sink)
      throws IOException {
    if (!onGpu(plan)) {
      return cpu.quantize(plan, source, sink);
    }
    try {
      return quantizeAsync(plan, source, sink).join();
    } catch (CompletionException e) {
      throw Failures.rethrow(e);
    }
  }

  @Override
  public CompletableFuture<QuantError> quantizeAsync(TensorPlan plan, TensorSource source,
      TensorSink sink) {
    if (!onGpu(plan)) {
      return DeviceQuantizer.super.quantizeAsync(plan, source, sink); // the CPU, synchronously
    }
    return onWorker(() -> bands.run(plan, source, null, sink));
  }

  private CompletableFuture<QuantError> onWorker(Callable<QuantError> task) {
    CompletableFuture<QuantError> f = new CompletableFuture<>();
    workers.execute(() -> {
      try {
        f.complete(task.call());
      } catch (Throwable t) {
        f.completeExceptionally(t);
      }
    });
    return f;
  }

  @Override
  public Session openSession() {
    return new IpcSession();
  }

  /** One part's buckets: each allocation is mapped on its first bucket and unmapped at close. */
  private final class IpcSession implements Session {
    private final Set<String> held = new HashSet<>();

    @Override
    public QuantError quantizeBucket(String gpuUuid, byte[] handle, long handleOffset,
        long byteLength, List<BucketTensor> tensors, TensorSink sink) throws IOException {
      if (!serves(gpuUuid)) {
        throw new IllegalArgumentException("a bucket on " + gpuUuid + " reached " + gpus());
      }
      if (handle.length != HANDLE_BYTES) {
        throw new IllegalArgumentException("a CUDA IPC handle has " + HANDLE_BYTES
            + " bytes, not " + handle.length);
      }
      String key = IpcMappings.key(handle);
      if (!held.contains(key)) {
        ipc.hold(key, handle);
        held.add(key);
      }
      CUdeviceptr base = ipc.base(key, handleOffset, byteLength);
      // The tensors run side by side, as a stream's tensors do, so the slots overlap; a tensor
      // copied through unquantized (an embedding) is split into pieces that run side by side too.
      List<CompletableFuture<QuantError>> running = new ArrayList<>();
      for (BucketTensor t : tensors) {
        CUdeviceptr at = base.withByteOffset(handleOffset + t.offset());
        for (Callable<QuantError> task : fromDevice(t.plan(), at, sink)) {
          running.add(onWorker(task));
        }
      }
      QuantError total = QuantError.NONE;
      Throwable failure = null;
      for (CompletableFuture<QuantError> f : running) { // every one: the trainer reuses it next
        try {
          total = total.plus(f.join());
        } catch (CompletionException e) {
          failure = failure == null ? e.getCause() : failure;
        }
      }
      if (failure != null) {
        throw Failures.rethrow(failure);
      }
      return total;
    }

    @Override
    public void close() {
      held.forEach(ipc::release);
      held.clear();
    }
  }

  @Override
  public int openHandles() {
    return ipc.open();
  }

  /** The work of one tensor of a bucket, read where it lies on the device. */
  private List<Callable<QuantError>> fromDevice(TensorPlan plan, CUdeviceptr at, TensorSink sink) {
    if (onGpu(plan)) {
      return List.of(() -> bands.run(plan, null, at, sink));
    }
    TensorSpec in = plan.input();
    long length = in.byteLength();
    if (plan instanceof TensorPlan.PassThrough) { // the bytes are the output: copy them out
      int esize = in.dtype().byteSize();
      long piece = slots.bandBytes() - slots.bandBytes() % esize;
      List<Callable<QuantError>> pieces = new ArrayList<>();
      for (long off = 0; off < length; off += piece) {
        long from = off;
        long n = Math.min(piece, length - off);
        pieces.add(() -> bands.copyOut(in, at.withByteOffset(from), from, n, sink));
      }
      return pieces;
    }
    // What the kernels do not cover (odd shapes, other dtypes) is small: the CPU quantizes it.
    if (length > Integer.MAX_VALUE - 16) {
      throw new IllegalArgumentException("tensor " + in.name() + " (" + in + ") is too large for"
          + " the CPU path of a CUDA bucket; send it as bytes");
    }
    return List.of(() -> {
      byte[] host = new byte[(int) length];
      cuda.call(() -> cuMemcpyDtoH(Pointer.to(host), at, length));
      return cpu.quantize(plan, TensorSource.of(ByteBuffer.wrap(host)), sink);
    });
  }

  /** Locks host memory for this GPU's direct copies, on the caller's thread. */
  @Override
  public PageLocker pageLocker() {
    return cuda::lockPages;
  }

  /** The context and first slot, for {@link CudaTimings}. */
  CudaContext context() {
    return cuda;
  }

  SlotPool slots() {
    return slots;
  }

  /**
   * Frees every device and pinned buffer and destroys the context. Destroying the context alone
   * would release them too; freeing one by one keeps working when the context is already broken
   * (then the driver reclaims what is left when the context goes).
   */
  @Override
  public void close() {
    workers.shutdownNow();
    try {
      slots.close();
      cuda.close();
    } finally {
      cpu.close();
    }
  }
}
