package dev.weightsync.server.quant;

import static jcuda.driver.JCudaDriver.cuCtxCreate;
import static jcuda.driver.JCudaDriver.cuCtxDestroy;
import static jcuda.driver.JCudaDriver.cuCtxSetCurrent;
import static jcuda.driver.JCudaDriver.cuCtxSynchronize;
import static jcuda.driver.JCudaDriver.cuDeviceGet;
import static jcuda.driver.JCudaDriver.cuDeviceGetCount;
import static jcuda.driver.JCudaDriver.cuDeviceGetName;
import static jcuda.driver.JCudaDriver.cuInit;
import static jcuda.driver.JCudaDriver.cuLaunchKernel;
import static jcuda.driver.JCudaDriver.cuMemAlloc;
import static jcuda.driver.JCudaDriver.cuMemFree;
import static jcuda.driver.JCudaDriver.cuMemcpyDtoH;
import static jcuda.driver.JCudaDriver.cuMemcpyHtoD;
import static jcuda.driver.JCudaDriver.cuMemsetD32;
import static jcuda.driver.JCudaDriver.cuModuleGetFunction;
import static jcuda.driver.JCudaDriver.cuModuleLoadData;

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
import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import jcuda.Pointer;
import jcuda.Sizeof;
import jcuda.driver.CUcontext;
import jcuda.driver.CUdevice;
import jcuda.driver.CUdeviceptr;
import jcuda.driver.CUfunction;
import jcuda.driver.CUmodule;
import jcuda.driver.JCudaDriver;

/**
 * The spec's arithmetic on an NVIDIA GPU through JCuda's driver API, bit-identical to
 * {@link CpuQuantizer}. One thread owns the CUDA context and runs every CUDA call; tensors larger
 * than the device buffers go through in row bands of whole blocks/groups. Tensors the kernels do
 * not cover (pass-through, non-BF16 input, rows not a multiple of 8 elements, group sizes whose
 * G/8 is not a power of two up to 32) go to the CPU quantizer, with identical bytes.
 *
 * <p>Device memory is allocated once at start (input, output, scales, statistics) and freed on
 * {@link #close}.
 */
public final class CudaQuantizer implements Quantizer {

  static final int THREADS = 512;
  static final int BLOCK = 128;

  private final ExecutorService owner = Executors.newSingleThreadExecutor(r -> {
    Thread t = new Thread(r, "weightsync-cuda");
    t.setDaemon(true);
    return t;
  });
  private final CpuQuantizer cpu;
  private final int ordinal;
  private final long bufferBytes;
  private String deviceName;
  private CUcontext context;
  private CUfunction fp8;
  private CUfunction int4;
  private CUdeviceptr dIn;
  private CUdeviceptr dOut;
  private CUdeviceptr dScales;
  private CUdeviceptr dPartials;
  private CUdeviceptr dFlag;
  private long partialsCapacity;
  private ByteBuffer hostIn;
  private ByteBuffer hostOut;

  /**
   * Opens device {@code ordinal}, loads the kernels and allocates {@code bufferBytes} of input
   * buffer (and matching output buffers).
   *
   * @throws IllegalStateException when no usable GPU, driver or kernel is there
   */
  public CudaQuantizer(int ordinal, long bufferBytes, int cpuThreads) {
    this.ordinal = ordinal;
    this.bufferBytes = bufferBytes;
    this.cpu = new CpuQuantizer(cpuThreads);
    try {
      call(this::open);
    } catch (RuntimeException | Error e) {
      close();
      String m = String.valueOf(e.getMessage());
      throw new IllegalStateException("CUDA device " + ordinal + " is not usable: "
          + e.getClass().getSimpleName() + ": " + m.lines().findFirst().orElse(""), e);
    }
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
    context = new CUcontext();
    cuCtxCreate(context, 0, device);
    CUmodule module = new CUmodule();
    cuModuleLoadData(module, ptx());
    fp8 = new CUfunction();
    cuModuleGetFunction(fp8, module, "fp8_block");
    int4 = new CUfunction();
    cuModuleGetFunction(int4, module, "int4_group");
    dIn = alloc(bufferBytes);
    dOut = alloc(bufferBytes); // FP8 and INT4 outputs are smaller than their BF16 input
    dScales = alloc(bufferBytes / 8 + 4096); // INT4 with G = 8: one BF16 scale per 8 BF16 inputs
    partialsCapacity = bufferBytes / (2 * THREADS * 8) + 1024;
    dPartials = alloc(partialsCapacity * 3 * Sizeof.DOUBLE);
    dFlag = alloc(Sizeof.INT);
    hostIn = ByteBuffer.allocateDirect((int) Math.min(bufferBytes, Integer.MAX_VALUE - 8));
    hostOut = ByteBuffer.allocateDirect((int) Math.min(bufferBytes, Integer.MAX_VALUE - 8))
        .order(ByteOrder.LITTLE_ENDIAN);
    return null;
  }

  /** The PTX shipped in the jar ({@code kernels/quantize.ptx}), NUL-terminated for the driver. */
  static byte[] ptx() {
    try (InputStream in = CudaQuantizer.class.getResourceAsStream("/kernels/quantize.ptx")) {
      if (in == null) {
        throw new IllegalStateException("kernels/quantize.ptx is missing from the classpath;"
            + " rebuild with ./mvnw package (server/src/main/cuda/build-ptx.sh)");
      }
      byte[] text = in.readAllBytes();
      byte[] z = java.util.Arrays.copyOf(text, text.length + 1);
      return z;
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

  @Override
  public QuantError quantize(TensorPlan plan, TensorSource source, TensorSink sink)
      throws IOException {
    if (!onGpu(plan) || plan.input().cols() * 2 * BLOCK > bufferBytes) {
      return cpu.quantize(plan, source, sink);
    }
    return call(() -> gpu(plan, source, sink));
  }

  private QuantError gpu(TensorPlan plan, TensorSource source, TensorSink sink) throws IOException {
    cuCtxSetCurrent(context);
    TensorSpec in = plan.input();
    long n = in.rows();
    int k = Math.toIntExact(in.cols());
    long rowBytes = 2L * k;
    long bandRows = Math.max(1, Math.min(n, hostIn.capacity() / rowBytes));
    boolean isFp8 = plan instanceof TensorPlan.Fp8Block;
    if (isFp8) {
      bandRows = Math.max(BLOCK, bandRows / BLOCK * BLOCK);
    }
    List<TensorSpec> outs = plan.outputs();
    QuantError total = QuantError.NONE;
    for (long r0 = 0; r0 < n; r0 += bandRows) {
      int rows = (int) Math.min(bandRows, n - r0);
      int bytes = (int) (rows * rowBytes);
      ByteBuffer window = source.window(r0 * rowBytes, bytes);
      copyToDevice(window, bytes);
      cuMemsetD32(dFlag, 0, 1);
      long blocks = isFp8
          ? launchFp8(rows, k, ((TensorPlan.Fp8Block) plan).ue8m0())
          : launchInt4(rows, k, ((TensorPlan.Int4Group) plan).groupSize());
      cuCtxSynchronize();
      int[] flag = new int[1];
      cuMemcpyDtoH(Pointer.to(flag), dFlag, Sizeof.INT);
      if (flag[0] != 0) {
        NonFiniteScan.check(in.name(), in.dtype(), window, r0 * k); // throws, naming the element
        throw new IllegalStateException("the GPU flagged a non-finite value the CPU scan missed");
      }
      total = total.plus(partials(blocks, (long) rows * k));
      if (isFp8) {
        writeBack(outs.get(0).name(), r0 * k, dOut, (long) rows * k, sink);
        int blockCols = (k + BLOCK - 1) / BLOCK;
        int blockRows = (rows + BLOCK - 1) / BLOCK;
        writeBack(outs.get(1).name(), (r0 / BLOCK) * blockCols * 4L, dScales,
            4L * blockCols * blockRows, sink);
      } else {
        int g = ((TensorPlan.Int4Group) plan).groupSize();
        writeBack(outs.get(0).name(), r0 * (k / 8) * 4L, dOut, (long) rows * k / 2, sink);
        writeBack(outs.get(1).name(), r0 * (k / g) * 2L, dScales, 2L * rows * (k / g), sink);
      }
    }
    if (!isFp8) {
      ByteBuffer shape = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
      shape.putInt(Math.toIntExact(n)).putInt(k).flip();
      sink.write(outs.get(2).name(), 0, shape);
    }
    return total;
  }

  private void copyToDevice(ByteBuffer window, int bytes) {
    ByteBuffer src = window;
    if (!window.isDirect()) { // heap (or read-only heap) buffers cannot be handed to the driver
      hostIn.clear();
      hostIn.put(window.duplicate()).flip();
      src = hostIn;
    }
    cuMemcpyHtoD(dIn, Pointer.to(src.slice()), bytes);
  }

  private long launchFp8(int rows, int k, boolean ue8m0) {
    int gx = (k + BLOCK - 1) / BLOCK;
    int gy = (rows + BLOCK - 1) / BLOCK;
    Pointer params = Pointer.to(Pointer.to(dIn), Pointer.to(dOut), Pointer.to(dScales),
        Pointer.to(dPartials), Pointer.to(dFlag), Pointer.to(new int[] {rows}),
        Pointer.to(new int[] {k}), Pointer.to(new int[] {ue8m0 ? 1 : 0}));
    cuLaunchKernel(fp8, gx, gy, 1, THREADS, 1, 1, 0, null, params, null);
    return (long) gx * gy;
  }

  private long launchInt4(int rows, int k, int g) {
    long words = (long) rows * k / 8;
    int blocks = (int) ((words + THREADS - 1) / THREADS);
    Pointer params = Pointer.to(Pointer.to(dIn), Pointer.to(dOut), Pointer.to(dScales),
        Pointer.to(dPartials), Pointer.to(dFlag), Pointer.to(new long[] {words}),
        Pointer.to(new int[] {k}), Pointer.to(new int[] {g}));
    cuLaunchKernel(int4, blocks, 1, 1, THREADS, 1, 1, 0, null, params, null);
    return blocks;
  }

  /** Adds the per-block statistics in block order, so the sums do not depend on scheduling. */
  private QuantError partials(long blocks, long elements) {
    if (blocks > partialsCapacity) {
      throw new IllegalStateException("statistics buffer too small: " + blocks + " blocks");
    }
    double[] p = new double[(int) blocks * 3];
    cuMemcpyDtoH(Pointer.to(p), dPartials, (long) p.length * Sizeof.DOUBLE);
    double max = 0;
    double err = 0;
    double ref = 0;
    for (int b = 0; b < blocks; b++) {
      max = Math.max(max, p[3 * b]);
      err += p[3 * b + 1];
      ref += p[3 * b + 2];
    }
    return new QuantError(max, err, ref, elements);
  }

  private void writeBack(String name, long offset, CUdeviceptr from, long bytes, TensorSink sink)
      throws IOException {
    hostOut.clear().limit((int) bytes);
    cuMemcpyDtoH(Pointer.to(hostOut.slice()), from, bytes);
    sink.write(name, offset, hostOut.duplicate());
  }

  /**
   * Runs {@code c} on the thread that owns the context and rethrows what it threw unchanged
   * (checked IOExceptions included, which {@link #quantize} declares).
   */
  private <T> T call(Callable<T> c) {
    try {
      return owner.submit(c).get();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException("interrupted while waiting for the GPU", e);
    } catch (ExecutionException e) {
      throw CudaQuantizer.<RuntimeException>sneaky(e.getCause());
    }
  }

  @SuppressWarnings("unchecked")
  private static <E extends Throwable> E sneaky(Throwable t) throws E {
    throw (E) t;
  }

  /**
   * Seconds per launch of {@code plan}'s kernel over a tensor already in device memory (random
   * BF16 values), averaged over {@code iterations} after one warm-up. The tensor must fit the
   * input buffer.
   */
  public double timeKernel(TensorPlan plan, int iterations) {
    return call(() -> {
      cuCtxSetCurrent(context);
      TensorSpec t = plan.input();
      int rows = Math.toIntExact(t.rows());
      int k = Math.toIntExact(t.cols());
      fillRandomBf16(t.byteLength());
      Runnable launch = plan instanceof TensorPlan.Fp8Block f
          ? () -> launchFp8(rows, k, f.ue8m0())
          : () -> launchInt4(rows, k, ((TensorPlan.Int4Group) plan).groupSize());
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

  /** Seconds per device-to-device copy of {@code bytes} (the bandwidth baseline). */
  public double timeDeviceCopy(long bytes, int iterations) {
    return call(() -> {
      cuCtxSetCurrent(context);
      JCudaDriver.cuMemcpyDtoD(dOut, dIn, bytes);
      cuCtxSynchronize();
      long start = System.nanoTime();
      for (int i = 0; i < iterations; i++) {
        JCudaDriver.cuMemcpyDtoD(dOut, dIn, bytes);
      }
      cuCtxSynchronize();
      return (System.nanoTime() - start) / 1e9 / iterations;
    });
  }

  private void fillRandomBf16(long bytes) {
    java.util.SplittableRandom r = new java.util.SplittableRandom(3);
    int chunk = (int) Math.min(bytes, hostIn.capacity());
    hostIn.clear();
    ByteBuffer b = hostIn.duplicate().order(ByteOrder.LITTLE_ENDIAN);
    for (int i = 0; i < chunk / 2; i++) {
      b.putShort(dev.weightsync.core.quant.Bf16.fromFloat((float) (r.nextGaussian() * 0.02)));
    }
    for (long off = 0; off < bytes; off += chunk) {
      cuMemcpyHtoD(dIn.withByteOffset(off), Pointer.to(hostIn), Math.min(chunk, bytes - off));
    }
  }

  @Override
  public void close() {
    try {
      if (context != null) {
        call(() -> {
          cuCtxSetCurrent(context);
          for (CUdeviceptr p : new CUdeviceptr[] {dIn, dOut, dScales, dPartials, dFlag}) {
            if (p != null) {
              cuMemFree(p);
            }
          }
          cuCtxDestroy(context);
          return null;
        });
      }
    } finally {
      owner.shutdownNow();
      cpu.close();
    }
  }
}
