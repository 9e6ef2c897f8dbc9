package dev.weightsync.server.quant;

import static jcuda.driver.JCudaDriver.cuCtxCreate;
import static jcuda.driver.JCudaDriver.cuCtxDestroy;
import static jcuda.driver.JCudaDriver.cuCtxSynchronize;
import static jcuda.driver.JCudaDriver.cuDeviceGet;
import static jcuda.driver.JCudaDriver.cuDeviceGetCount;
import static jcuda.driver.JCudaDriver.cuDeviceGetName;
import static jcuda.driver.JCudaDriver.cuDeviceGetUuid;
import static jcuda.driver.JCudaDriver.cuInit;
import static jcuda.driver.JCudaDriver.cuIpcCloseMemHandle;
import static jcuda.driver.JCudaDriver.cuIpcOpenMemHandle;
import static jcuda.driver.JCudaDriver.cuLaunchHostFunc;
import static jcuda.driver.JCudaDriver.cuLaunchKernel;
import static jcuda.driver.JCudaDriver.cuMemAlloc;
import static jcuda.driver.JCudaDriver.cuMemAllocHost;
import static jcuda.driver.JCudaDriver.cuMemFree;
import static jcuda.driver.JCudaDriver.cuMemFreeHost;
import static jcuda.driver.JCudaDriver.cuMemHostGetFlags;
import static jcuda.driver.JCudaDriver.cuMemGetAddressRange;
import static jcuda.driver.JCudaDriver.cuMemcpyDtoD;
import static jcuda.driver.JCudaDriver.cuMemcpyDtoH;
import static jcuda.driver.JCudaDriver.cuMemcpyDtoHAsync;
import static jcuda.driver.JCudaDriver.cuMemcpyHtoD;
import static jcuda.driver.JCudaDriver.cuMemcpyHtoDAsync;
import static jcuda.driver.JCudaDriver.cuMemsetD32Async;
import static jcuda.driver.JCudaDriver.cuModuleGetFunction;
import static jcuda.driver.JCudaDriver.cuModuleLoadData;
import static jcuda.driver.JCudaDriver.cuStreamCreate;
import static jcuda.driver.JCudaDriver.cuStreamDestroy;
import static jcuda.driver.JCudaDriver.cuStreamSynchronize;

import dev.weightsync.core.quant.CpuQuantizer;
import dev.weightsync.core.quant.NonFiniteScan;
import dev.weightsync.core.quant.QuantError;
import dev.weightsync.core.quant.Quantizer;
import dev.weightsync.core.quant.TensorPlan;
import dev.weightsync.core.tensor.DType;
import dev.weightsync.core.tensor.TensorSink;
import dev.weightsync.core.tensor.TensorSource;
import dev.weightsync.core.tensor.TensorSpec;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Deque;
import java.util.List;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.Callable;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicInteger;
import jcuda.CudaException;
import jcuda.Pointer;
import jcuda.Sizeof;
import jcuda.driver.CUcontext;
import jcuda.driver.CUdevice;
import jcuda.driver.CUdeviceptr;
import jcuda.driver.CUfunction;
import jcuda.driver.CUhostFn;
import jcuda.driver.CUipcMemHandle;
import jcuda.driver.CUipcMem_flags;
import jcuda.driver.CUmodule;
import jcuda.driver.CUstream;
import jcuda.driver.CUstream_flags;
import jcuda.driver.CUuuid;
import jcuda.driver.JCudaDriver;

/**
 * The spec's arithmetic on an NVIDIA GPU through JCuda's driver API, bit-identical to
 * {@link CpuQuantizer}.
 *
 * <p>How the work flows: a tensor is cut into bands of whole 128-row blocks (FP8) or whole rows
 * (INT4) that fit a <em>slot</em>: a CUDA stream with its device buffers and pinned host buffers.
 * Per band, on the slot's stream: host-to-device copy, kernel, device-to-host copies of the
 * outputs, scales and statistics. Each tensor keeps two bands in flight and several tensors run
 * at once ({@link #quantizeAsync}), so the copy in of one band, the kernel of another and the copy
 * out of a third overlap on the card's separate copy engines. Sources already in pinned memory
 * (see {@link #allocatePinned}) are copied to the device straight from where they are; other
 * sources are first copied into the slot's pinned buffer by the band's worker thread.
 *
 * <p>A trainer's CUDA IPC bucket ({@link #openSession}) takes the same path without the copy in:
 * the kernels read the bucket where it lies in the trainer's memory, and only the outputs are
 * copied out. Its tensors run side by side like a stream's; the allocation stays mapped for the
 * rest of the part, as trainers refill the same buffers bucket after bucket.
 *
 * <p>One thread owns the CUDA context and makes every CUDA call; workers do the host copies and
 * sink writes, and learn that a band is done from a host function queued after it on its stream
 * (the owner never blocks on a band while other slots wait to be fed). Slots are allocated once at start and freed on {@link #close}; a CUDA error fails
 * the tensor with a {@link GpuFailureException} and returns its slots. Tensors the kernels do not
 * cover (pass-through, non-BF16, rows not a multiple of 8 elements, group sizes whose G/8 is not
 * a power of two up to 32, rows wider than a band) go to the CPU quantizer, with identical bytes.
 */
public final class CudaQuantizer implements Quantizer, CudaIpcReader {

  static final int THREADS = 512;
  static final int BLOCK = 128;
  /** Bands a tensor keeps in flight: one computing or copying out while the next copies in. */
  private static final int BANDS_IN_FLIGHT = 2;

  /** A CUDA stream with its own buffers; one band at a time. */
  private static final class Slot {
    final CUstream stream = new CUstream();
    CUdeviceptr dIn;
    CUdeviceptr dOut;
    CUdeviceptr dScales;
    CUdeviceptr dPartials;
    CUdeviceptr dFlag;
    final Pointer hIn = new Pointer();
    final Pointer hOut = new Pointer();
    final Pointer hScales = new Pointer();
    final Pointer hPartials = new Pointer();
    final Pointer hFlag = new Pointer();
    ByteBuffer in;
    ByteBuffer out;
    ByteBuffer scales;
    ByteBuffer partials;
    ByteBuffer flag;
  }

  /**
   * One band of a tensor, in flight on a slot; its input is a host {@code window} copied in, or
   * device memory ({@code deviceIn}, a trainer's bucket) read in place.
   */
  private record Band(Slot slot, long row0, int rows, ByteBuffer window, CUdeviceptr deviceIn,
                      long blocks, long outBytes, long scaleBytes, CompletableFuture<Void> done) {}

  /**
   * Runs on the driver's callback thread when a band's last copy out is done, so that waiting for
   * a band never blocks the owner thread (which must stay free to queue the other slots' work).
   * It makes no CUDA call, as the driver requires.
   */
  private static final CUhostFn BAND_DONE = data -> ((CompletableFuture<?>) data).complete(null);

  private final ExecutorService owner = Executors.newSingleThreadExecutor(r -> {
    Thread t = new Thread(r, "weightsync-cuda");
    t.setDaemon(true);
    return t;
  });
  private final ExecutorService workers;
  private final CpuQuantizer cpu;
  private final int ordinal;
  private final long bandBytes;
  private final long partialsCapacity;
  private final List<Slot> slots = new ArrayList<>();
  private final BlockingQueue<Slot> free;
  /** An allocation of another process mapped here, and how many buckets are reading it. */
  private static final class OpenAllocation {
    final CUdeviceptr base;
    final long size;
    int users;

    OpenAllocation(CUdeviceptr base, long size) {
      this.base = base;
      this.size = size;
    }
  }

  /** IPC mappings by handle (hex); touched on the owner thread only. */
  private final java.util.Map<String, OpenAllocation> opened = new java.util.HashMap<>();
  private final AtomicInteger openHandles = new AtomicInteger();
  /** Pinned memory handed out by {@link #allocatePinned}, freed on close. */
  private final List<Pointer> userPinned = new ArrayList<>();
  private String deviceName;
  private String gpuUuid;
  private CUcontext context;
  private CUfunction fp8;
  private CUfunction int4;

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
    this.ordinal = ordinal;
    this.bandBytes = bandBytes;
    this.partialsCapacity = bandBytes / 2048 + 1024; // the most thread blocks a band can need
    this.cpu = new CpuQuantizer(cpuThreads);
    this.free = new ArrayBlockingQueue<>(slotCount);
    AtomicInteger n = new AtomicInteger();
    this.workers = Executors.newFixedThreadPool(slotCount, r -> {
      Thread t = new Thread(r, "weightsync-cuda-band-" + n.incrementAndGet());
      t.setDaemon(true);
      return t;
    });
    try {
      call(() -> open(slotCount));
    } catch (RuntimeException | Error e) {
      close();
      String m = String.valueOf(e.getMessage());
      throw new IllegalStateException("CUDA device " + ordinal + " is not usable: "
          + e.getClass().getSimpleName() + ": " + m.lines().findFirst().orElse(""), e);
    }
  }

  private Void open(int slotCount) {
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
    CUmodule module = new CUmodule();
    cuModuleLoadData(module, ptx());
    fp8 = new CUfunction();
    cuModuleGetFunction(fp8, module, "fp8_block");
    int4 = new CUfunction();
    cuModuleGetFunction(int4, module, "int4_group");
    long outBytes = bandBytes / 2;   // FP8: 1 byte per BF16 input; INT4: half a byte
    long scaleBytes = bandBytes / 8 + 4096; // INT4 with G = 8: 2 bytes per 8 inputs
    long partialBytes = partialsCapacity * 3 * Sizeof.DOUBLE;
    for (int i = 0; i < slotCount; i++) {
      Slot s = new Slot();
      cuStreamCreate(s.stream, CUstream_flags.CU_STREAM_NON_BLOCKING);
      slots.add(s); // before allocating, so close() frees whatever part was allocated
      s.dIn = alloc(bandBytes);
      s.dOut = alloc(outBytes);
      s.dScales = alloc(scaleBytes);
      s.dPartials = alloc(partialBytes);
      s.dFlag = alloc(Sizeof.INT);
      s.in = pinned(s.hIn, bandBytes);
      s.out = pinned(s.hOut, outBytes);
      s.scales = pinned(s.hScales, scaleBytes);
      s.partials = pinned(s.hPartials, partialBytes);
      s.flag = pinned(s.hFlag, Sizeof.INT);
      free.add(s);
    }
    return null;
  }

  private static ByteBuffer pinned(Pointer p, long bytes) {
    cuMemAllocHost(p, bytes);
    return p.getByteBuffer(0, bytes).order(ByteOrder.LITTLE_ENDIAN);
  }

  /** The PTX shipped in the jar ({@code kernels/quantize.ptx}), NUL-terminated for the driver. */
  static byte[] ptx() {
    try (InputStream in = CudaQuantizer.class.getResourceAsStream("/kernels/quantize.ptx")) {
      if (in == null) {
        throw new IllegalStateException("kernels/quantize.ptx is missing from the classpath;"
            + " rebuild with ./mvnw package (server/src/main/cuda/build-ptx.sh)");
      }
      byte[] text = in.readAllBytes();
      return Arrays.copyOf(text, text.length + 1);
    } catch (IOException e) {
      throw new IllegalStateException(e);
    }
  }

  private static CUdeviceptr alloc(long bytes) {
    CUdeviceptr p = new CUdeviceptr();
    cuMemAlloc(p, bytes);
    return p;
  }

  @Override
  public String device() {
    return "cuda:" + ordinal;
  }

  public String deviceName() {
    return deviceName;
  }

  @Override
  public String gpuUuid() {
    return gpuUuid;
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

  /**
   * Page-locked host memory of this quantizer's context, as a little-endian buffer. Sources in
   * such memory skip the copy into a slot: the device reads them directly. Freed on close.
   */
  public ByteBuffer allocatePinned(long bytes) {
    return call(() -> {
      Pointer p = new Pointer();
      ByteBuffer b = pinned(p, bytes);
      synchronized (userPinned) {
        userPinned.add(p);
      }
      return b;
    });
  }

  /** Whether the kernels take this plan (else the CPU does, with the same bytes). */
  static boolean onGpu(TensorPlan plan) {
    TensorSpec t = plan.input();
    if (t.dtype() != DType.BF16 || t.rank() != 2 || t.cols() % 8 != 0 || t.elementCount() == 0) {
      return false;
    }
    if (plan instanceof TensorPlan.Fp8Block) {
      return true;
    }
    if (plan instanceof TensorPlan.Int4Group g) {
      int seg = g.groupSize() / 8;
      return seg <= 32 && Integer.bitCount(seg) == 1;
    }
    return false;
  }

  private boolean fits(TensorPlan plan) {
    long rowsPerBand = plan instanceof TensorPlan.Fp8Block ? BLOCK : 1;
    return plan.input().cols() * 2 * rowsPerBand <= bandBytes;
  }

  @Override
  public QuantError quantize(TensorPlan plan, TensorSource source, TensorSink sink)
      throws IOException {
    if (!onGpu(plan) || !fits(plan)) {
      return cpu.quantize(plan, source, sink);
    }
    try {
      return quantizeAsync(plan, source, sink).join();
    } catch (CompletionException e) {
      if (e.getCause() instanceof IOException io) {
        throw io;
      }
      throw CudaQuantizer.<RuntimeException>sneaky(e.getCause());
    }
  }

  @Override
  public CompletableFuture<QuantError> quantizeAsync(TensorPlan plan, TensorSource source,
      TensorSink sink) {
    if (!onGpu(plan) || !fits(plan)) {
      return Quantizer.super.quantizeAsync(plan, source, sink); // the CPU, synchronously
    }
    CompletableFuture<QuantError> f = new CompletableFuture<>();
    workers.execute(() -> {
      try {
        f.complete(bands(plan, source, null, sink));
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
    private final java.util.Set<String> held = new java.util.HashSet<>();

    @Override
    public QuantError quantizeBucket(byte[] handle, long handleOffset, long byteLength,
        List<BucketTensor> tensors, TensorSink sink) throws IOException {
      if (handle.length != HANDLE_BYTES) {
        throw new IllegalArgumentException("a CUDA IPC handle has " + HANDLE_BYTES
            + " bytes, not " + handle.length);
      }
      String key = java.util.HexFormat.of().formatHex(handle);
      if (!held.contains(key)) {
        call(() -> openIpc(key, handle));
        held.add(key);
      }
      CUdeviceptr base = call(() -> mapped(key, handleOffset, byteLength));
      // The tensors run side by side, as a stream's tensors do, so the slots overlap; a tensor
      // copied through unquantized (an embedding) is split into pieces that run side by side too.
      List<CompletableFuture<QuantError>> running = new ArrayList<>();
      for (BucketTensor t : tensors) {
        CUdeviceptr at = base.withByteOffset(handleOffset + t.offset());
        for (Callable<QuantError> task : fromDevice(t.plan(), at, sink)) {
          CompletableFuture<QuantError> f = new CompletableFuture<>();
          workers.execute(() -> {
            try {
              f.complete(task.call());
            } catch (Throwable e) {
              f.completeExceptionally(e);
            }
          });
          running.add(f);
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
      if (failure instanceof IOException io) {
        throw io;
      }
      if (failure != null) {
        throw CudaQuantizer.<RuntimeException>sneaky(failure);
      }
      return total;
    }

    @Override
    public void close() {
      for (String key : held) {
        call(() -> closeIpc(key));
      }
      held.clear();
    }
  }

  /**
   * Maps another process's allocation into this context, or counts one more user of a mapping a
   * session already holds (CUDA maps an allocation once per context). A handle CUDA refuses is
   * the caller's error, not a GPU failure. Owner thread only.
   */
  private Void openIpc(String key, byte[] handle) {
    OpenAllocation a = opened.get(key);
    if (a == null) {
      CUdeviceptr base = new CUdeviceptr();
      try {
        cuIpcOpenMemHandle(base, ipcHandle(handle),
            CUipcMem_flags.CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS);
      } catch (CudaException e) {
        throw new IllegalArgumentException("CUDA refused the IPC handle (" + e.getMessage()
            + "): it must name a live allocation of a process on " + gpuUuid);
      }
      long[] size = new long[1];
      cuMemGetAddressRange(new CUdeviceptr(), size, base);
      a = new OpenAllocation(base, size[0]);
      opened.put(key, a);
      openHandles.incrementAndGet();
    }
    a.users++;
    return null;
  }

  /** Where a bucket's allocation is mapped, once the bucket is known to lie within it. */
  private CUdeviceptr mapped(String key, long offset, long length) {
    OpenAllocation a = opened.get(key);
    if (offset < 0 || length < 0 || offset + length > a.size || offset + length < 0) {
      throw new IllegalArgumentException("the bucket [" + offset + ", " + (offset + length)
          + ") does not lie within its " + a.size + "-byte allocation");
    }
    return a.base;
  }

  /** Unmaps the allocation once no session holds it. Owner thread only. */
  private Void closeIpc(String key) {
    OpenAllocation a = opened.get(key);
    if (--a.users == 0) {
      opened.remove(key);
      openHandles.decrementAndGet();
      cuIpcCloseMemHandle(a.base);
    }
    return null;
  }

  @Override
  public int openHandles() {
    return openHandles.get();
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

  /** The work of one tensor of a bucket, read where it lies on the device. */
  private List<Callable<QuantError>> fromDevice(TensorPlan plan, CUdeviceptr at, TensorSink sink) {
    if (onGpu(plan) && fits(plan)) {
      return List.of(() -> bands(plan, null, at, sink));
    }
    TensorSpec in = plan.input();
    long length = in.byteLength();
    if (plan instanceof TensorPlan.PassThrough) { // the bytes are the output: copy them out
      int esize = in.dtype().byteSize();
      long piece = bandBytes - bandBytes % esize;
      List<Callable<QuantError>> pieces = new ArrayList<>();
      for (long off = 0; off < length; off += piece) {
        long from = off;
        long n = Math.min(piece, length - off);
        pieces.add(() -> copyOut(in, at.withByteOffset(from), from, n, sink));
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
      call(() -> cuMemcpyDtoH(Pointer.to(host), at, length));
      return cpu.quantize(plan, TensorSource.of(ByteBuffer.wrap(host)), sink);
    });
  }

  /** Copies a piece of a pass-through tensor out through a slot, checking it for NaN. */
  private QuantError copyOut(TensorSpec in, CUdeviceptr from, long offset, long n, TensorSink sink)
      throws IOException, InterruptedException {
    Slot s = free.take();
    try {
      call(() -> cuMemcpyDtoH(s.hIn, from, n));
      ByteBuffer bytes = s.in.duplicate().clear().limit((int) n).slice()
          .order(ByteOrder.LITTLE_ENDIAN);
      NonFiniteScan.check(in.name(), in.dtype(), bytes, offset / in.dtype().byteSize());
      sink.write(in.name(), offset, bytes);
      return QuantError.NONE;
    } finally {
      free.add(s);
    }
  }

  /**
   * Runs one tensor through the slots, band after band, two in flight. Its bytes come from
   * {@code source} on the host or, when {@code device} is not null, from device memory.
   */
  private QuantError bands(TensorPlan plan, TensorSource source, CUdeviceptr device,
      TensorSink sink) throws IOException, InterruptedException {
    TensorSpec in = plan.input();
    long n = in.rows();
    long rowBytes = 2 * in.cols();
    long bandRows = Math.max(1, Math.min(n, bandBytes / rowBytes));
    if (plan instanceof TensorPlan.Fp8Block) {
      bandRows = Math.max(BLOCK, bandRows / BLOCK * BLOCK);
    }
    Deque<Band> inFlight = new ArrayDeque<>();
    QuantError total = QuantError.NONE;
    try {
      for (long r0 = 0; r0 < n; r0 += bandRows) {
        int rows = (int) Math.min(bandRows, n - r0);
        ByteBuffer window = device != null ? null
            : source.window(r0 * rowBytes, Math.toIntExact(rows * rowBytes));
        CUdeviceptr at = device == null ? null : device.withByteOffset(r0 * rowBytes);
        Slot slot = inFlight.isEmpty() ? free.take() : free.poll();
        while (slot == null) { // hold no slot while waiting for one: no deadlock between tensors
          total = total.plus(finish(plan, inFlight.removeFirst(), sink));
          slot = inFlight.isEmpty() ? free.take() : free.poll();
        }
        inFlight.add(start(plan, slot, r0, rows, window, at));
        if (inFlight.size() >= BANDS_IN_FLIGHT) {
          total = total.plus(finish(plan, inFlight.removeFirst(), sink));
        }
      }
      while (!inFlight.isEmpty()) {
        total = total.plus(finish(plan, inFlight.removeFirst(), sink));
      }
    } finally {
      for (Band b : inFlight) { // after an error: wait out the GPU's use of the slot, then free it
        try {
          call(() -> cuStreamSynchronize(b.slot().stream));
        } catch (RuntimeException ignored) {
          // the error that got us here is the one to report
        }
        free.add(b.slot());
      }
    }
    if (plan instanceof TensorPlan.Int4Group g) {
      sink.write(plan.outputs().get(2).name(), 0, g.shapeTensor());
    }
    return total;
  }

  /**
   * Enqueues one band on its slot's stream: copy in (none for a device source), kernel, copies
   * out. Returns at once.
   */
  private Band start(TensorPlan plan, Slot slot, long r0, int rows, ByteBuffer window,
      CUdeviceptr deviceIn) {
    boolean enqueued = false;
    try {
      int k = Math.toIntExact(plan.input().cols());
      ByteBuffer from;
      if (deviceIn != null) {
        from = null;
      } else if (call(() -> isPinned(window))) {
        from = window.slice();
      } else { // the worker copies, so the owner thread only ever queues asynchronous work
        slot.in.clear();
        slot.in.put(window.duplicate()).flip();
        from = slot.in.slice();
      }
      CUdeviceptr input = deviceIn != null ? deviceIn : slot.dIn;
      Band band = call(() -> {
        if (from != null) {
          cuMemcpyHtoDAsync(slot.dIn, Pointer.to(from), from.remaining(), slot.stream);
        }
        cuMemsetD32Async(slot.dFlag, 0, 1, slot.stream);
        long blocks;
        long outBytes;
        long scaleBytes;
        if (plan instanceof TensorPlan.Fp8Block f) {
          blocks = launchFp8(slot, input, rows, k, f.ue8m0());
          outBytes = (long) rows * k;
          scaleBytes = 4L * blocks;
        } else {
          int g = ((TensorPlan.Int4Group) plan).groupSize();
          blocks = launchInt4(slot, input, rows, k, g);
          outBytes = (long) rows * k / 2;
          scaleBytes = 2L * rows * (k / g);
        }
        cuMemcpyDtoHAsync(slot.hOut, slot.dOut, outBytes, slot.stream);
        cuMemcpyDtoHAsync(slot.hScales, slot.dScales, scaleBytes, slot.stream);
        cuMemcpyDtoHAsync(slot.hPartials, slot.dPartials, blocks * 3 * Sizeof.DOUBLE, slot.stream);
        cuMemcpyDtoHAsync(slot.hFlag, slot.dFlag, Sizeof.INT, slot.stream);
        CompletableFuture<Void> done = new CompletableFuture<>();
        cuLaunchHostFunc(slot.stream, BAND_DONE, done);
        return new Band(slot, r0, rows, window, deviceIn, blocks, outBytes, scaleBytes, done);
      });
      enqueued = true;
      return band;
    } finally {
      if (!enqueued) {
        free.add(slot);
      }
    }
  }

  /** Waits for a band, writes its outputs to the sink and frees its slot. */
  private QuantError finish(TensorPlan plan, Band b, TensorSink sink) throws IOException {
    Slot s = b.slot();
    try {
      awaitBand(b);
      TensorSpec in = plan.input();
      long k = in.cols();
      if (s.flag.getInt(0) != 0) {
        NonFiniteScan.check(in.name(), in.dtype(), hostBytes(b, k), b.row0() * k); // the element
        throw new IllegalStateException("the GPU flagged a non-finite value the CPU scan missed");
      }
      QuantError e = partials(s, b.blocks(), b.rows() * k);
      List<TensorSpec> outs = plan.outputs();
      if (plan instanceof TensorPlan.Fp8Block) {
        long blockCols = (k + BLOCK - 1) / BLOCK;
        sink.write(outs.get(0).name(), b.row0() * k, s.out.slice(0, (int) b.outBytes()));
        sink.write(outs.get(1).name(), (b.row0() / BLOCK) * blockCols * 4,
            s.scales.slice(0, (int) b.scaleBytes()));
      } else {
        int g = ((TensorPlan.Int4Group) plan).groupSize();
        sink.write(outs.get(0).name(), b.row0() * k / 2, s.out.slice(0, (int) b.outBytes()));
        sink.write(outs.get(1).name(), b.row0() * (k / g) * 2,
            s.scales.slice(0, (int) b.scaleBytes()));
      }
      return e;
    } finally {
      free.add(s);
    }
  }

  /**
   * Waits for the band's completion callback. The driver skips callbacks once the context has
   * failed, so after a second without one the owner synchronizes the stream: that returns when the
   * band is merely slow and throws the CUDA error when the context is broken.
   */
  private void awaitBand(Band b) throws IOException {
    try {
      while (true) {
        try {
          b.done().get(1, TimeUnit.SECONDS);
          return;
        } catch (TimeoutException e) {
          call(() -> cuStreamSynchronize(b.slot().stream));
          if (b.done().isDone()) {
            return;
          }
        }
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IOException("interrupted while waiting for the GPU", e);
    } catch (ExecutionException e) {
      throw new IllegalStateException(e.getCause());
    }
  }

  /** A band's input on the host: its window, or a copy of the device memory it was read from. */
  private ByteBuffer hostBytes(Band b, long k) {
    if (b.window() != null) {
      return b.window();
    }
    long bytes = 2L * b.rows() * k;
    call(() -> cuMemcpyDtoH(b.slot().hIn, b.deviceIn(), bytes));
    return b.slot().in.duplicate().clear().limit((int) bytes).slice()
        .order(ByteOrder.LITTLE_ENDIAN);
  }

  private boolean isPinned(ByteBuffer window) {
    if (!window.isDirect()) {
      return false;
    }
    try {
      cuMemHostGetFlags(new int[1], Pointer.to(window.slice()));
      return true;
    } catch (CudaException e) {
      return false; // pageable memory (a heap copy, a mapped file)
    }
  }

  private long launchFp8(Slot s, CUdeviceptr in, int rows, int k, boolean ue8m0) {
    int gx = (k + BLOCK - 1) / BLOCK;
    int gy = (rows + BLOCK - 1) / BLOCK;
    Pointer params = Pointer.to(Pointer.to(in), Pointer.to(s.dOut), Pointer.to(s.dScales),
        Pointer.to(s.dPartials), Pointer.to(s.dFlag), Pointer.to(new int[] {rows}),
        Pointer.to(new int[] {k}), Pointer.to(new int[] {ue8m0 ? 1 : 0}));
    cuLaunchKernel(fp8, gx, gy, 1, THREADS, 1, 1, 0, s.stream, params, null);
    return (long) gx * gy;
  }

  private long launchInt4(Slot s, CUdeviceptr in, int rows, int k, int g) {
    long words = (long) rows * k / 8;
    int blocks = (int) ((words + THREADS - 1) / THREADS);
    Pointer params = Pointer.to(Pointer.to(in), Pointer.to(s.dOut), Pointer.to(s.dScales),
        Pointer.to(s.dPartials), Pointer.to(s.dFlag), Pointer.to(new long[] {words}),
        Pointer.to(new int[] {k}), Pointer.to(new int[] {g}));
    cuLaunchKernel(int4, blocks, 1, 1, THREADS, 1, 1, 0, s.stream, params, null);
    return blocks;
  }

  /** Adds the per-block statistics in block order, so the sums do not depend on scheduling. */
  private QuantError partials(Slot s, long blocks, long elements) {
    if (blocks > partialsCapacity) {
      throw new IllegalStateException("statistics buffer too small: " + blocks + " blocks");
    }
    double max = 0;
    double err = 0;
    double ref = 0;
    for (int b = 0; b < blocks; b++) {
      max = Math.max(max, s.partials.getDouble(24 * b));
      err += s.partials.getDouble(24 * b + 8);
      ref += s.partials.getDouble(24 * b + 16);
    }
    return new QuantError(max, err, ref, elements);
  }

  /**
   * Runs {@code c} on the thread that owns the context. A CUDA error becomes a
   * {@link GpuFailureException}; anything else is rethrown unchanged.
   */
  private <T> T call(Callable<T> c) {
    try {
      return owner.submit(c).get();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException("interrupted while waiting for the GPU", e);
    } catch (ExecutionException e) {
      if (e.getCause() instanceof CudaException ce) {
        throw new GpuFailureException("CUDA error on cuda:" + ordinal + ": " + ce.getMessage(), ce);
      }
      throw CudaQuantizer.<RuntimeException>sneaky(e.getCause());
    }
  }

  @SuppressWarnings("unchecked")
  private static <E extends Throwable> E sneaky(Throwable t) throws E {
    throw (E) t;
  }

  /**
   * Seconds per launch of {@code plan}'s kernel over a tensor already in device memory (random
   * BF16 values), averaged over {@code iterations} after one warm-up. The tensor must fit a band.
   */
  public double timeKernel(TensorPlan plan, int iterations) {
    Slot s = slots.get(0);
    return call(() -> {
      TensorSpec t = plan.input();
      int rows = Math.toIntExact(t.rows());
      int k = Math.toIntExact(t.cols());
      fillRandomBf16(s, t.byteLength());
      Runnable launch = plan instanceof TensorPlan.Fp8Block f
          ? () -> launchFp8(s, s.dIn, rows, k, f.ue8m0())
          : () -> launchInt4(s, s.dIn, rows, k, ((TensorPlan.Int4Group) plan).groupSize());
      launch.run();
      cuCtxSynchronize();
      long start = System.nanoTime();
      for (int i = 0; i < iterations; i++) {
        launch.run();
      }
      cuCtxSynchronize();
      return (System.nanoTime() - start) / 1e9 / iterations;
    });
  }

  /** Seconds per device-to-device copy of {@code bytes} (at most a band: the bandwidth baseline). */
  public double timeDeviceCopy(long bytes, int iterations) {
    Slot s = slots.get(0);
    return call(() -> {
      cuMemcpyDtoD(s.dOut, s.dIn, bytes);
      cuCtxSynchronize();
      long start = System.nanoTime();
      for (int i = 0; i < iterations; i++) {
        cuMemcpyDtoD(s.dOut, s.dIn, bytes);
      }
      cuCtxSynchronize();
      return (System.nanoTime() - start) / 1e9 / iterations;
    });
  }

  /**
   * Seconds to copy {@code source} (pinned, see {@link #allocatePinned}) to the device band by
   * band, as the quantizer's copies in do, but with nothing else: the transfer baseline.
   */
  public double timeHostToDevice(ByteBuffer source) {
    Slot s = slots.get(0);
    return call(() -> {
      long start = System.nanoTime();
      for (int off = 0; off < source.capacity(); off += (int) bandBytes) {
        int len = (int) Math.min(bandBytes, source.capacity() - off);
        cuMemcpyHtoDAsync(s.dIn, Pointer.to(source.slice(off, len)), len, s.stream);
      }
      cuStreamSynchronize(s.stream);
      return (System.nanoTime() - start) / 1e9;
    });
  }

  private void fillRandomBf16(Slot s, long bytes) {
    java.util.SplittableRandom r = new java.util.SplittableRandom(3);
    int chunk = (int) Math.min(bytes, s.in.capacity());
    ByteBuffer b = s.in.duplicate().clear().order(ByteOrder.LITTLE_ENDIAN);
    for (int i = 0; i < chunk / 2; i++) {
      b.putShort(dev.weightsync.core.quant.Bf16.fromFloat((float) (r.nextGaussian() * 0.02)));
    }
    for (long off = 0; off < bytes; off += chunk) {
      cuMemcpyHtoD(s.dIn.withByteOffset(off), s.hIn, Math.min(chunk, bytes - off));
    }
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
      if (context != null) {
        call(() -> {
          quietly(JCudaDriver::cuCtxSynchronize);
          for (Slot s : slots) {
            for (CUdeviceptr p : new CUdeviceptr[] {s.dIn, s.dOut, s.dScales, s.dPartials, s.dFlag}) {
              if (p != null) {
                quietly(() -> cuMemFree(p));
              }
            }
            Pointer[] host = {s.hIn, s.hOut, s.hScales, s.hPartials, s.hFlag};
            ByteBuffer[] views = {s.in, s.out, s.scales, s.partials, s.flag};
            for (int i = 0; i < host.length; i++) {
              if (views[i] != null) { // allocated
                Pointer p = host[i];
                quietly(() -> cuMemFreeHost(p));
              }
            }
            quietly(() -> cuStreamDestroy(s.stream));
          }
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
      cpu.close();
    }
  }

  private static void quietly(Runnable cudaCall) {
    try {
      cudaCall.run();
    } catch (CudaException e) {
      // closing: a broken context refuses the calls, and destroying it reclaims the memory
    }
  }
}
