package dev.weightsync.server.quant.cuda;

import static jcuda.driver.JCudaDriver.cuLaunchHostFunc;
import static jcuda.driver.JCudaDriver.cuMemcpyDtoH;
import static jcuda.driver.JCudaDriver.cuMemcpyDtoHAsync;
import static jcuda.driver.JCudaDriver.cuMemcpyHtoDAsync;
import static jcuda.driver.JCudaDriver.cuMemsetD32Async;
import static jcuda.driver.JCudaDriver.cuStreamSynchronize;

import dev.weightsync.core.quant.NonFiniteScan;
import dev.weightsync.core.quant.OutputLayout;
import dev.weightsync.core.quant.QuantError;
import dev.weightsync.core.quant.TensorPlan;
import dev.weightsync.core.tensor.DirectRegion;
import dev.weightsync.core.tensor.TensorSink;
import dev.weightsync.core.tensor.TensorSource;
import dev.weightsync.core.tensor.TensorSpec;
import dev.weightsync.server.quant.cuda.SlotPool.Slot;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayDeque;
import java.util.Deque;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import jcuda.Pointer;
import jcuda.Sizeof;
import jcuda.driver.CUdeviceptr;
import jcuda.driver.CUhostFn;

/**
 * One tensor through the slots, on a worker thread: cut into bands of whole 128-row blocks (FP8)
 * or whole rows (INT4) that fit a slot; per band, on the slot's stream, the copy in (none when
 * the input already lies on the device), the kernel and the copies out of outputs, scales and
 * statistics; two bands in flight, so one band's copy in overlaps another's kernel and copy out.
 *
 * <p>The owner thread only queues asynchronous work here. A worker learns that a band is done
 * from a host function queued after it on its stream, and then writes the band's outputs to the
 * sink from the slot's pinned buffers; the pass-through pieces of a CUDA bucket come out the same
 * way. Where the sink offers the output's place in page-locked memory ({@link TensorSink#direct}:
 * a kept staged file), the band's output is copied there instead, straight from the device, and
 * the worker only releases the region: one host copy less. Synchronous copies on the owner
 * thread remain only where a tensor fails (showing the element that is not finite) and for the
 * small tensors of a bucket the kernels do not take.
 */
final class BandPipeline {

  /** Bands a tensor keeps in flight: one computing or copying out while the next copies in. */
  private static final int BANDS_IN_FLIGHT = 2;

  /**
   * Runs on the driver's callback thread when a slot's queued work is done, so that waiting for
   * it never blocks the owner thread (which must stay free to queue the other slots' work). It
   * makes no CUDA call, as the driver requires.
   */
  private static final CUhostFn DONE = data -> ((CompletableFuture<?>) data).complete(null);

  /**
   * One band of a tensor, in flight on a slot; its input is a host {@code window} copied in, or
   * device memory ({@code deviceIn}, a trainer's bucket) read in place.
   */
  private record Band(Slot slot, long row0, int rows, ByteBuffer window, CUdeviceptr deviceIn,
                      DirectRegion direct, long blocks, long outBytes, long scaleBytes,
                      CompletableFuture<Void> done) {}

  private final CudaContext cuda;
  private final SlotPool slots;
  private final Kernels kernels;

  BandPipeline(CudaContext cuda, SlotPool slots, Kernels kernels) {
    this.cuda = cuda;
    this.slots = slots;
    this.kernels = kernels;
  }

  /** Whether a band can hold this plan's smallest unit (a block of rows for FP8, a row for INT4). */
  boolean fits(TensorPlan plan) {
    return plan.input().cols() * 2 * Kernels.rowsPerBand(plan) <= slots.bandBytes();
  }

  /**
   * Runs one tensor through the slots, band after band. Its bytes come from {@code source} on the
   * host or, when {@code device} is not null, from device memory.
   */
  QuantError run(TensorPlan plan, TensorSource source, CUdeviceptr device, TensorSink sink)
      throws IOException, InterruptedException {
    TensorSpec in = plan.input();
    long n = in.rows();
    long rowBytes = 2 * in.cols();
    long bandRows = Math.max(1, Math.min(n, slots.bandBytes() / rowBytes));
    if (plan instanceof TensorPlan.Fp8Block) {
      bandRows = Math.max(Kernels.BLOCK, bandRows / Kernels.BLOCK * Kernels.BLOCK);
    }
    Deque<Band> inFlight = new ArrayDeque<>();
    QuantError total = QuantError.NONE;
    try {
      for (long r0 = 0; r0 < n; r0 += bandRows) {
        int rows = (int) Math.min(bandRows, n - r0);
        ByteBuffer window = device != null ? null
            : source.window(r0 * rowBytes, Math.toIntExact(rows * rowBytes));
        CUdeviceptr at = device == null ? null : device.withByteOffset(r0 * rowBytes);
        Slot slot = inFlight.isEmpty() ? slots.take() : slots.poll();
        while (slot == null) { // hold no slot while waiting for one: no deadlock between tensors
          total = total.plus(finish(plan, inFlight.removeFirst(), sink));
          slot = inFlight.isEmpty() ? slots.take() : slots.poll();
        }
        inFlight.add(start(plan, slot, r0, rows, window, at, sink));
        if (inFlight.size() >= BANDS_IN_FLIGHT) {
          total = total.plus(finish(plan, inFlight.removeFirst(), sink));
        }
      }
      while (!inFlight.isEmpty()) {
        total = total.plus(finish(plan, inFlight.removeFirst(), sink));
      }
    } finally {
      for (Band b : inFlight) { // after an error: wait out the GPU's use of the slot, then free it
        waitOut(b.slot());
        if (b.direct() != null) {
          b.direct().release(false);
        }
        slots.giveBack(b.slot());
      }
    }
    OutputLayout.writeWholeTensorOutputs(plan, sink);
    return total;
  }

  /**
   * Copies a piece of a pass-through tensor in device memory out through a slot (or straight
   * into the sink's memory where it offers it), checking it for values that are not finite.
   */
  QuantError copyOut(TensorSpec in, CUdeviceptr from, long offset, long n, TensorSink sink)
      throws IOException, InterruptedException {
    DirectRegion direct = sink.direct(in.name(), offset, n);
    boolean written = false;
    Slot s = null;
    try {
      s = slots.take();
      Slot slot = s;
      Pointer to = direct != null ? Pointer.to(direct.memory()) : slot.hIn;
      CompletableFuture<Void> done = new CompletableFuture<>();
      cuda.call(() -> {
        cuMemcpyDtoHAsync(to, from, n, slot.stream);
        cuLaunchHostFunc(slot.stream, DONE, done);
        return null;
      });
      await(slot, done);
      ByteBuffer bytes = (direct != null ? direct.memory().duplicate()
          : slot.in.duplicate().clear().limit((int) n).slice()).order(ByteOrder.LITTLE_ENDIAN);
      NonFiniteScan.check(in.name(), in.dtype(), bytes, offset / in.dtype().byteSize());
      if (direct == null) {
        sink.write(in.name(), offset, bytes);
      }
      written = true;
      return QuantError.NONE;
    } finally {
      if (direct != null) {
        release(direct, written, s);
      }
      if (s != null) {
        slots.giveBack(s);
      }
    }
  }

  /**
   * Enqueues one band on its slot's stream: copy in (none for a device source), kernel, copies
   * out (the output straight into the sink's memory where it offers it). Returns at once.
   */
  private Band start(TensorPlan plan, Slot slot, long r0, int rows, ByteBuffer window,
      CUdeviceptr deviceIn, TensorSink sink) {
    DirectRegion direct = null;
    boolean enqueued = false;
    try {
      int k = Math.toIntExact(plan.input().cols());
      ByteBuffer from;
      if (deviceIn != null) {
        from = null;
      } else if (cuda.isPinned(window)) {
        from = window.slice();
      } else { // the worker copies, so the owner thread only ever queues asynchronous work
        slot.in.clear();
        slot.in.put(window.duplicate()).flip();
        from = slot.in.slice();
      }
      CUdeviceptr input = deviceIn != null ? deviceIn : slot.dIn;
      long outBytes;
      long scaleBytes;
      if (plan instanceof TensorPlan.Fp8Block) {
        outBytes = (long) rows * k;
        scaleBytes = 4L * Kernels.fp8Tiles(rows, k);
      } else {
        outBytes = (long) rows * k / 2;
        scaleBytes = 2L * rows * (k / ((TensorPlan.Int4Group) plan).groupSize());
      }
      direct = sink.direct(plan.outputs().get(0).name(), OutputLayout.offsetsAtRow(plan, r0)[0],
          outBytes);
      Pointer outTo = direct != null ? Pointer.to(direct.memory()) : slot.hOut;
      DirectRegion region = direct;
      Band band = cuda.call(() -> {
        if (from != null) {
          cuMemcpyHtoDAsync(slot.dIn, Pointer.to(from), from.remaining(), slot.stream);
        }
        cuMemsetD32Async(slot.dFlag, 0, 1, slot.stream);
        long blocks = plan instanceof TensorPlan.Fp8Block f
            ? kernels.launchFp8(slot, input, rows, k, f.ue8m0())
            : kernels.launchInt4(slot, input, rows, k, ((TensorPlan.Int4Group) plan).groupSize());
        cuMemcpyDtoHAsync(outTo, slot.dOut, outBytes, slot.stream);
        cuMemcpyDtoHAsync(slot.hScales, slot.dScales, scaleBytes, slot.stream);
        cuMemcpyDtoHAsync(slot.hPartials, slot.dPartials, blocks * 3 * Sizeof.DOUBLE, slot.stream);
        cuMemcpyDtoHAsync(slot.hFlag, slot.dFlag, Sizeof.INT, slot.stream);
        CompletableFuture<Void> done = new CompletableFuture<>();
        cuLaunchHostFunc(slot.stream, DONE, done);
        return new Band(slot, r0, rows, window, deviceIn, region, blocks, outBytes, scaleBytes,
            done);
      });
      enqueued = true;
      return band;
    } finally {
      if (!enqueued) {
        if (direct != null) {
          release(direct, false, slot);
        }
        slots.giveBack(slot);
      }
    }
  }

  /**
   * Waits for a band, writes its outputs to the sink (or releases the region the device wrote
   * its output to) and frees its slot.
   */
  private QuantError finish(TensorPlan plan, Band b, TensorSink sink) throws IOException {
    Slot s = b.slot();
    boolean copied = false;
    try {
      await(s, b.done());
      TensorSpec in = plan.input();
      long k = in.cols();
      if (s.flag.getInt(0) != 0) {
        NonFiniteScan.check(in.name(), in.dtype(), hostBytes(b, k), b.row0() * k); // the element
        throw new IllegalStateException("the GPU flagged a non-finite value the CPU scan missed");
      }
      copied = true;
      QuantError e = Kernels.partials(s, b.blocks(), b.rows() * k, slots.partialsCapacity());
      List<TensorSpec> outs = plan.outputs();
      long[] at = OutputLayout.offsetsAtRow(plan, b.row0());
      if (b.direct() == null) {
        sink.write(outs.get(0).name(), at[0], s.out.slice(0, (int) b.outBytes()));
      }
      sink.write(outs.get(1).name(), at[1], s.scales.slice(0, (int) b.scaleBytes()));
      return e;
    } finally {
      if (b.direct() != null) {
        release(b.direct(), copied, s);
      }
      slots.giveBack(s);
    }
  }

  /**
   * Gives a direct region back. Unless its copy is known to be done, first waits out the slot's
   * stream: the region's memory may be unlocked and unmapped next, and the device must not be
   * copying into it then.
   */
  private void release(DirectRegion r, boolean copied, Slot s) {
    if (!copied && s != null) {
      waitOut(s);
    }
    r.release(copied);
  }

  /**
   * Waits until the GPU is done with the slot's stream, even on an interrupted thread (which is
   * interrupted again after); a broken context's error is left to the failure already reported.
   */
  private void waitOut(Slot s) {
    boolean interrupted = Thread.interrupted();
    try {
      cuda.call(() -> cuStreamSynchronize(s.stream));
    } catch (RuntimeException ignored) {
      // the error that got us here is the one to report
    } finally {
      if (interrupted) {
        Thread.currentThread().interrupt();
      }
    }
  }

  /**
   * Waits for the completion callback of {@code s}'s queued work. The driver skips callbacks once
   * the context has failed, so after a second without one the owner synchronizes the stream: that
   * returns when the work is merely slow and throws the CUDA error when the context is broken.
   */
  private void await(Slot s, CompletableFuture<Void> done) throws IOException {
    try {
      while (true) {
        try {
          done.get(1, TimeUnit.SECONDS);
          return;
        } catch (TimeoutException e) {
          cuda.call(() -> cuStreamSynchronize(s.stream));
          if (done.isDone()) {
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
    cuda.call(() -> cuMemcpyDtoH(b.slot().hIn, b.deviceIn(), bytes));
    return b.slot().in.duplicate().clear().limit((int) bytes).slice()
        .order(ByteOrder.LITTLE_ENDIAN);
  }
}
