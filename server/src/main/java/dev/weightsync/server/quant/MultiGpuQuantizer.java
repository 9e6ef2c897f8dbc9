package dev.weightsync.server.quant;

import dev.weightsync.core.quant.CpuQuantizer;
import dev.weightsync.core.quant.QuantError;
import dev.weightsync.core.quant.Quantizer;
import dev.weightsync.core.quant.TensorPlan;
import dev.weightsync.core.tensor.PageLocker;
import dev.weightsync.core.tensor.TensorSink;
import dev.weightsync.core.tensor.TensorSource;
import java.io.IOException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.logging.Logger;
import java.util.stream.Collectors;

/**
 * Every GPU the sidecar can see ({@code --device cuda:all}), so that one sidecar per node serves
 * every trainer rank there. A CUDA IPC bucket is read on the GPU whose UUID it names; weights sent
 * as bytes go to the least busy GPU (fewest tensors in flight, already opened ones first, then
 * the lowest ordinal) or to the one configured ({@code bytes-gpu}). A GPU is opened on first use,
 * with its own context, owner thread and slots, so GPUs no trainer uses cost nothing. Each GPU has
 * its own failure policy ({@link FallbackQuantizer}): one that fails hands its byte work to the
 * CPU (or fails it) and reads no more buckets; the others go on.
 */
public final class MultiGpuQuantizer implements Quantizer, CudaIpcReader {

  private static final Logger LOG = Logger.getLogger(MultiGpuQuantizer.class.getName());

  /** {@code bytes-gpu} for "the least busy GPU". */
  public static final int LEAST_BUSY = -1;

  private final GpuDevices devices;
  private final List<Gpu> gpus = new ArrayList<>();
  private final int cpuThreads;
  private final boolean fallBack;
  private final int bytesGpu;
  private final CpuQuantizer cpu;

  /**
   * One visible GPU: opened on first use. Only opening takes the lock, so that a metrics scrape or
   * the choice of a GPU for bytes never waits for another GPU's context to be created.
   */
  private final class Gpu {
    final int ordinal;
    final String uuid;
    final AtomicInteger inFlight = new AtomicInteger();
    private volatile DeviceQuantizer device;
    private volatile FallbackQuantizer quantizer;
    private volatile String openFailure;

    Gpu(int ordinal, String uuid) {
      this.ordinal = ordinal;
      this.uuid = uuid;
    }

    /** The GPU's quantizer, opening it now if needed; null when it could not be opened. */
    FallbackQuantizer quantizer() {
      FallbackQuantizer q = quantizer;
      return q != null || openFailure != null ? q : open();
    }

    private synchronized FallbackQuantizer open() {
      if (quantizer == null && openFailure == null) {
        try {
          DeviceQuantizer d = devices.open(ordinal);
          device = d;
          quantizer = new FallbackQuantizer(d, new CpuQuantizer(cpuThreads), fallBack);
          LOG.info("opened cuda:" + ordinal + " (" + uuid + ")");
        } catch (IllegalStateException e) {
          openFailure = e.getMessage();
          LOG.warning("cuda:" + ordinal + " (" + uuid + ") cannot be used: " + openFailure);
        }
      }
      return quantizer;
    }

    boolean isOpen() {
      return quantizer != null;
    }

    /** Whether it can still take work: not failed to open, and no failure handed to the CPU. */
    boolean usable() {
      FallbackQuantizer q = quantizer;
      return openFailure == null && (q == null || q.note().isEmpty());
    }

    int openHandles() {
      DeviceQuantizer d = device;
      return d == null ? 0 : d.openHandles();
    }

    String state() {
      String s = "cuda:" + ordinal + " " + uuid;
      FallbackQuantizer q = quantizer;
      if (openFailure != null) {
        return s + " (cannot be used: " + openFailure + ")";
      }
      return q != null && !q.note().isEmpty() ? s + " (" + q.note() + ")" : s;
    }

    synchronized void close() {
      if (quantizer != null) {
        quantizer.close();
      }
    }
  }

  /**
   * Every GPU of {@code devices}; none is opened yet. {@code bytesGpu}: the ordinal that
   * quantizes bytes, or {@link #LEAST_BUSY}.
   *
   * @throws IllegalStateException when there is no GPU, or {@code bytesGpu} is not one of them
   */
  public MultiGpuQuantizer(GpuDevices devices, int cpuThreads, boolean fallBack, int bytesGpu) {
    this.devices = devices;
    this.cpuThreads = cpuThreads;
    this.fallBack = fallBack;
    this.bytesGpu = bytesGpu;
    List<String> uuids = devices.uuids();
    if (uuids.isEmpty()) {
      throw new IllegalStateException("--device cuda:all: no CUDA device is visible");
    }
    if (bytesGpu != LEAST_BUSY && (bytesGpu < 0 || bytesGpu >= uuids.size())) {
      throw new IllegalStateException("bytes-gpu " + bytesGpu + ": only cuda:0 to cuda:"
          + (uuids.size() - 1) + " are visible");
    }
    for (int i = 0; i < uuids.size(); i++) {
      gpus.add(new Gpu(i, uuids.get(i)));
    }
    this.cpu = new CpuQuantizer(cpuThreads);
  }

  @Override
  public String device() {
    return "cuda:all";
  }

  /** Empty while every GPU in use works; else which failed and what took over. */
  public String note() {
    return gpus.stream().filter(g -> !g.usable()).map(Gpu::state)
        .collect(Collectors.joining("; "));
  }

  /** GPUs opened so far (each holds a context and its slots). */
  public int opened() {
    return (int) gpus.stream().filter(Gpu::isOpen).count();
  }

  /**
   * Page locks by the first open GPU that takes them: they are portable, so every GPU copies
   * into the memory directly. None before a GPU is open.
   */
  @Override
  public PageLocker pageLocker() {
    return region -> {
      for (Gpu g : gpus) {
        FallbackQuantizer q = g.isOpen() ? g.quantizer() : null;
        PageLocker.Locked l = q == null ? null : q.pageLocker().lock(region);
        if (l != null) {
          return l;
        }
      }
      return null;
    };
  }

  @Override
  public QuantError quantize(TensorPlan plan, TensorSource source, TensorSink sink)
      throws IOException {
    Gpu g = forBytes();
    if (g == null) {
      return cpu.quantize(plan, source, sink);
    }
    g.inFlight.incrementAndGet();
    try {
      return g.quantizer().quantize(plan, source, sink);
    } finally {
      g.inFlight.decrementAndGet();
    }
  }

  @Override
  public CompletableFuture<QuantError> quantizeAsync(TensorPlan plan, TensorSource source,
      TensorSink sink) {
    Gpu g = forBytes();
    if (g == null) {
      return cpu.quantizeAsync(plan, source, sink);
    }
    g.inFlight.incrementAndGet();
    try {
      return g.quantizer().quantizeAsync(plan, source, sink)
          .whenComplete((r, t) -> g.inFlight.decrementAndGet());
    } catch (RuntimeException e) {
      g.inFlight.decrementAndGet();
      throw e;
    }
  }

  /**
   * The GPU for a tensor sent as bytes, opened; null when none is usable and the CPU takes it
   * ({@code gpu-failure: cpu}).
   *
   * @throws GpuFailureException when none is usable and failures must fail
   */
  private Gpu forBytes() {
    List<Gpu> candidates = bytesGpu == LEAST_BUSY ? gpus : List.of(gpus.get(bytesGpu));
    while (true) {
      Gpu best = null;
      for (Gpu g : candidates) {
        if (g.usable() && (best == null || busier(best, g))) {
          best = g;
        }
      }
      if (best == null) {
        if (fallBack) {
          return null;
        }
        throw new GpuFailureException("no GPU can quantize: " + note(), null);
      }
      if (best.quantizer() != null) {
        return best;
      }
      // it could not be opened: it is no longer usable; choose again among the others
    }
  }

  /** Whether {@code a} is busier than {@code b}: more in flight, or as many and not yet open. */
  private static boolean busier(Gpu a, Gpu b) {
    int x = a.inFlight.get();
    int y = b.inFlight.get();
    return x != y ? x > y : !a.isOpen() && b.isOpen();
  }

  @Override
  public boolean serves(String gpuUuid) {
    Gpu g = byUuid(gpuUuid);
    return g != null && g.usable();
  }

  @Override
  public String gpus() {
    return gpus.stream().map(Gpu::state).collect(Collectors.joining(", "));
  }

  @Override
  public int openHandles() {
    return gpus.stream().mapToInt(Gpu::openHandles).sum();
  }

  private Gpu byUuid(String gpuUuid) {
    return gpus.stream().filter(g -> GpuUuids.same(g.uuid, gpuUuid)).findFirst().orElse(null);
  }

  @Override
  public Session openSession() {
    return new Session() {
      private final Map<Integer, Session> open = new HashMap<>();

      @Override
      public QuantError quantizeBucket(String gpuUuid, byte[] handle, long handleOffset,
          long byteLength, List<BucketTensor> tensors, TensorSink sink) throws IOException {
        Gpu g = byUuid(gpuUuid);
        if (g == null) {
          throw new IllegalArgumentException("no visible GPU has UUID " + gpuUuid + " (" + gpus()
              + ")");
        }
        Session s = open.get(g.ordinal);
        if (s == null) {
          CudaIpcReader reader = g.quantizer() == null ? null : CudaIpcReader.of(g.quantizer());
          if (reader == null) {
            throw new IllegalStateException(g.state() + " reads no CUDA buckets");
          }
          s = reader.openSession();
          open.put(g.ordinal, s);
        }
        g.inFlight.incrementAndGet();
        try {
          return s.quantizeBucket(gpuUuid, handle, handleOffset, byteLength, tensors, sink);
        } finally {
          g.inFlight.decrementAndGet();
        }
      }

      @Override
      public void close() {
        open.values().forEach(Session::close);
        open.clear();
      }
    };
  }

  @Override
  public void close() {
    try {
      gpus.forEach(Gpu::close);
    } finally {
      cpu.close();
    }
  }
}
