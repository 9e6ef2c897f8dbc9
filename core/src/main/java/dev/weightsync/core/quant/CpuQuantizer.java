package dev.weightsync.core.quant;

import dev.weightsync.core.tensor.TensorSink;
import dev.weightsync.core.tensor.TensorSource;
import dev.weightsync.core.tensor.TensorSpec;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The spec's arithmetic on the CPU, split into row bands over a fixed pool of threads. Bytes never
 * depend on the thread count: each band is computed independently and the error statistics are
 * merged in band order.
 */
public final class CpuQuantizer implements Quantizer {

  /** Pass-through tensors are copied in windows of this size. */
  private static final int COPY_WINDOW = 8 << 20;
  /** INT4 bands hold about this many elements. */
  private static final int INT4_BAND_ELEMENTS = 1 << 20;

  private final int threads;
  private final ExecutorService pool;
  private final ThreadLocal<Fp8BlockKernel.Scratch> fp8Scratch =
      ThreadLocal.withInitial(Fp8BlockKernel.Scratch::new);

  public CpuQuantizer(int threads) {
    if (threads < 1) {
      throw new IllegalArgumentException("threads must be at least 1, got " + threads);
    }
    this.threads = threads;
    AtomicInteger n = new AtomicInteger();
    this.pool = threads == 1 ? null : Executors.newFixedThreadPool(threads, r -> {
      Thread t = new Thread(r, "weightsync-quantize-" + n.incrementAndGet());
      t.setDaemon(true);
      return t;
    });
  }

  public int threads() {
    return threads;
  }

  @Override
  public String device() {
    return "cpu";
  }

  @Override
  public QuantError quantize(TensorPlan plan, TensorSource source, TensorSink sink)
      throws IOException {
    if (plan instanceof TensorPlan.Fp8Block p) {
      return fp8(p, source, sink);
    }
    if (plan instanceof TensorPlan.Int4Group p) {
      return int4(p, source, sink);
    }
    return passThrough(plan.input(), source, sink);
  }

  private QuantError passThrough(TensorSpec t, TensorSource source, TensorSink sink)
      throws IOException {
    long length = t.byteLength();
    int esize = t.dtype().byteSize();
    int window = COPY_WINDOW - COPY_WINDOW % esize;
    for (long off = 0; off < length; off += window) {
      ByteBuffer w = source.window(off, (int) Math.min(window, length - off));
      NonFiniteScan.check(t.name(), t.dtype(), w, off / esize);
      sink.write(t.name(), off, w);
    }
    return QuantError.NONE;
  }

  private QuantError fp8(TensorPlan.Fp8Block plan, TensorSource source, TensorSink sink)
      throws IOException {
    TensorSpec in = plan.input();
    List<TensorSpec> outs = plan.outputs();
    String qName = outs.get(0).name();
    String scaleName = outs.get(1).name();
    long n = in.rows();
    int k = Math.toIntExact(in.cols());
    int esize = in.dtype().byteSize();
    int blockCols = (k + Fp8BlockKernel.BLOCK - 1) / Fp8BlockKernel.BLOCK;
    long bands = (n + Fp8BlockKernel.BLOCK - 1) / Fp8BlockKernel.BLOCK;
    List<Callable<QuantError>> tasks = new ArrayList<>();
    for (long b = 0; b < bands; b++) {
      long r0 = b * Fp8BlockKernel.BLOCK;
      int rows = (int) Math.min(Fp8BlockKernel.BLOCK, n - r0);
      tasks.add(() -> {
        ByteBuffer src = source.window(r0 * k * esize, rows * k * esize);
        byte[] q = new byte[rows * k];
        float[] scales = new float[blockCols];
        QuantError e = Fp8BlockKernel.quantizeBand(in.name(), r0 * k, src, in.dtype(), rows, k,
            plan.ue8m0(), q, scales, fp8Scratch.get());
        long[] at = OutputLayout.offsetsAtRow(plan, r0);
        sink.write(qName, at[0], ByteBuffer.wrap(q));
        ByteBuffer s = ByteBuffer.allocate(4 * blockCols).order(ByteOrder.LITTLE_ENDIAN);
        s.asFloatBuffer().put(scales);
        sink.write(scaleName, at[1], s);
        return e;
      });
    }
    return runInOrder(tasks);
  }

  private QuantError int4(TensorPlan.Int4Group plan, TensorSource source, TensorSink sink)
      throws IOException {
    TensorSpec in = plan.input();
    List<TensorSpec> outs = plan.outputs();
    long n = in.rows();
    int k = Math.toIntExact(in.cols());
    int g = plan.groupSize();
    int esize = in.dtype().byteSize();
    int bandRows = Math.max(1, INT4_BAND_ELEMENTS / k);
    List<Callable<QuantError>> tasks = new ArrayList<>();
    for (long r0 = 0; r0 < n; r0 += bandRows) {
      long first = r0;
      int rows = (int) Math.min(bandRows, n - r0);
      tasks.add(() -> {
        ByteBuffer src = source.window(first * k * esize, rows * k * esize);
        int[] packed = new int[rows * (k / 8)];
        short[] scales = new short[rows * (k / g)];
        QuantError e = Int4GroupKernel.quantizeRows(in.name(), first * k, src, in.dtype(), rows,
            k, g, packed, scales, new Int4GroupKernel.Scratch(k));
        long[] at = OutputLayout.offsetsAtRow(plan, first);
        ByteBuffer p = ByteBuffer.allocate(4 * packed.length).order(ByteOrder.LITTLE_ENDIAN);
        p.asIntBuffer().put(packed);
        sink.write(outs.get(0).name(), at[0], p);
        ByteBuffer s = ByteBuffer.allocate(2 * scales.length).order(ByteOrder.LITTLE_ENDIAN);
        s.asShortBuffer().put(scales);
        sink.write(outs.get(1).name(), at[1], s);
        return e;
      });
    }
    QuantError error = runInOrder(tasks);
    OutputLayout.writeWholeTensorOutputs(plan, sink);
    return error;
  }

  /**
   * Runs the tasks (on the pool when there is one) and merges their results in task order. After
   * a failure the tasks not yet started are skipped, and this returns only once no task is still
   * running: the caller may then unmap the source (a page read after unmapping is a crash).
   */
  private QuantError runInOrder(List<Callable<QuantError>> tasks) throws IOException {
    QuantError total = QuantError.NONE;
    if (pool == null || tasks.size() == 1) {
      for (Callable<QuantError> t : tasks) {
        total = total.plus(call(t));
      }
      return total;
    }
    AtomicBoolean failed = new AtomicBoolean();
    List<Future<QuantError>> futures = new ArrayList<>(tasks.size());
    for (Callable<QuantError> t : tasks) {
      futures.add(pool.submit(() -> {
        if (failed.get()) {
          return QuantError.NONE; // skipped: the tensor has failed already
        }
        try {
          return t.call();
        } catch (Exception | Error e) {
          failed.set(true);
          throw e;
        }
      }));
    }
    Throwable failure = null;
    for (Future<QuantError> f : futures) { // every one, so none is left running
      try {
        QuantError e = awaitUninterruptibly(f);
        if (failure == null) {
          total = total.plus(e);
        }
      } catch (ExecutionException e) {
        failure = failure == null ? e.getCause() : failure;
      }
    }
    if (failure != null) {
      throw Failures.rethrow(failure);
    }
    return total;
  }

  private static QuantError awaitUninterruptibly(Future<QuantError> f)
      throws ExecutionException {
    boolean interrupted = false;
    try {
      while (true) {
        try {
          return f.get();
        } catch (InterruptedException e) {
          interrupted = true;
        }
      }
    } finally {
      if (interrupted) {
        Thread.currentThread().interrupt();
      }
    }
  }

  private static QuantError call(Callable<QuantError> task) throws IOException {
    try {
      return task.call();
    } catch (Exception e) {
      throw Failures.rethrow(e);
    }
  }

  @Override
  public void close() {
    if (pool != null) {
      pool.shutdownNow();
    }
  }
}
