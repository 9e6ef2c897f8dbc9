package dev.weightsync.server.quant.cuda;

import static jcuda.driver.JCudaDriver.cuCtxSynchronize;
import static jcuda.driver.JCudaDriver.cuMemFree;
import static jcuda.driver.JCudaDriver.cuMemFreeHost;
import static jcuda.driver.JCudaDriver.cuStreamCreate;
import static jcuda.driver.JCudaDriver.cuStreamDestroy;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import jcuda.Pointer;
import jcuda.Sizeof;
import jcuda.driver.CUdeviceptr;
import jcuda.driver.CUstream;
import jcuda.driver.CUstream_flags;

/**
 * The slots a GPU quantizes through, allocated once at start and freed at close: each a CUDA
 * stream with device buffers for one band (input, outputs, scales, per-block statistics, the
 * non-finite flag) and pinned host buffers to copy them through. A slot serves one band at a time;
 * workers take one and give it back.
 */
final class SlotPool {

  /** A CUDA stream with its own buffers; one band at a time. */
  static final class Slot {
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

  private final CudaContext cuda;
  private final long bandBytes;
  /** The most thread blocks a band can need: the size of the statistics buffers. */
  private final long partialsCapacity;
  private final List<Slot> slots = new ArrayList<>();
  private final BlockingQueue<Slot> free;

  /**
   * Allocates {@code count} slots for bands of up to {@code bandBytes} of BF16 input. On a
   * failure, what was allocated is freed by {@link #close}.
   */
  SlotPool(CudaContext cuda, long bandBytes, int count) {
    this.cuda = cuda;
    this.bandBytes = bandBytes;
    this.partialsCapacity = partialsCapacity(bandBytes);
    this.free = new ArrayBlockingQueue<>(count);
    cuda.call(() -> {
      long outBytes = outBytes(bandBytes);
      long scaleBytes = scaleBytes(bandBytes);
      long partialBytes = partialBytes(bandBytes);
      for (int i = 0; i < count; i++) {
        Slot s = new Slot();
        cuStreamCreate(s.stream, CUstream_flags.CU_STREAM_NON_BLOCKING);
        slots.add(s); // before allocating, so close() frees whatever part was allocated
        s.dIn = CudaContext.alloc(bandBytes);
        s.dOut = CudaContext.alloc(outBytes);
        s.dScales = CudaContext.alloc(scaleBytes);
        s.dPartials = CudaContext.alloc(partialBytes);
        s.dFlag = CudaContext.alloc(Sizeof.INT);
        s.in = CudaContext.pinned(s.hIn, bandBytes);
        s.out = CudaContext.pinned(s.hOut, outBytes);
        s.scales = CudaContext.pinned(s.hScales, scaleBytes);
        s.partials = CudaContext.pinned(s.hPartials, partialBytes);
        s.flag = CudaContext.pinned(s.hFlag, Sizeof.INT);
        free.add(s);
      }
      return null;
    });
  }

  /**
   * Bytes one slot takes for bands of {@code bandBytes}, on the device and as much again in
   * page-locked host memory (what an operator must leave free on the GPU and in the memory limit).
   */
  static long slotBytes(long bandBytes) {
    return bandBytes + outBytes(bandBytes) + scaleBytes(bandBytes) + partialBytes(bandBytes) + Sizeof.INT;
  }

  private static long outBytes(long bandBytes) {
    return bandBytes / 2; // FP8: 1 byte per BF16 input; INT4: half a byte
  }

  private static long scaleBytes(long bandBytes) {
    return bandBytes / 8 + 4096; // INT4 with G = 8: 2 bytes per 8 inputs
  }

  private static long partialsCapacity(long bandBytes) {
    return bandBytes / 2048 + 1024;
  }

  private static long partialBytes(long bandBytes) {
    return partialsCapacity(bandBytes) * 3 * Sizeof.DOUBLE;
  }

  long bandBytes() {
    return bandBytes;
  }

  long partialsCapacity() {
    return partialsCapacity;
  }

  /** Waits for a free slot. */
  Slot take() throws InterruptedException {
    return free.take();
  }

  /** A free slot, or null when none is free now. */
  Slot poll() {
    return free.poll();
  }

  void giveBack(Slot s) {
    free.add(s);
  }

  /** The first slot, for timings that run alone. */
  Slot first() {
    return slots.get(0);
  }

  /**
   * Frees every buffer and stream, one by one, which keeps working when the context is already
   * broken (the driver then reclaims what is left when the context goes).
   */
  void close() {
    if (!cuda.opened()) {
      return;
    }
    cuda.call(() -> {
      CudaContext.quietly(() -> cuCtxSynchronize());
      for (Slot s : slots) {
        for (CUdeviceptr p : new CUdeviceptr[] {s.dIn, s.dOut, s.dScales, s.dPartials, s.dFlag}) {
          if (p != null) {
            CudaContext.quietly(() -> cuMemFree(p));
          }
        }
        Pointer[] host = {s.hIn, s.hOut, s.hScales, s.hPartials, s.hFlag};
        ByteBuffer[] views = {s.in, s.out, s.scales, s.partials, s.flag};
        for (int i = 0; i < host.length; i++) {
          if (views[i] != null) { // allocated
            Pointer p = host[i];
            CudaContext.quietly(() -> cuMemFreeHost(p));
          }
        }
        CudaContext.quietly(() -> cuStreamDestroy(s.stream));
      }
      return null;
    });
  }
}
