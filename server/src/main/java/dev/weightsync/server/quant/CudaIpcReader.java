package dev.weightsync.server.quant;

import dev.weightsync.core.quant.QuantError;
import dev.weightsync.core.quant.Quantizer;
import dev.weightsync.core.quant.TensorPlan;
import dev.weightsync.core.tensor.TensorSink;
import java.io.IOException;
import java.util.List;

/**
 * Quantizes tensors that lie in another process's memory on one of this quantizer's GPUs, reached
 * through a CUDA IPC handle: nothing but the quantized result leaves the device.
 */
public interface CudaIpcReader {

  /** The size of a {@code cudaIpcMemHandle_t}. */
  int HANDLE_BYTES = 64;

  /** One tensor of a bucket: its plan and where its bytes start in the bucket. */
  record BucketTensor(TensorPlan plan, long offset) {}

  /** Whether buckets on the GPU of this UUID ({@link GpuUuids}) can be read here now. */
  boolean serves(String gpuUuid);

  /** The GPUs this reader runs on, for messages: CUDA's names, {@code GPU-} and the UUID. */
  String gpus();

  /** IPC mappings open now: 0 between parts, unless one leaked. */
  int openHandles();

  /**
   * A session for one part's buckets. An allocation is mapped on its first bucket and stays
   * mapped until the session closes: trainers refill the same buffers, and mapping is the costly
   * step. A trainer may reuse a bucket's memory once {@link Session#quantizeBucket} has returned;
   * memory it frees instead stays allocated until the session closes.
   */
  Session openSession();

  /** See {@link #openSession}. Not thread-safe: one part's stream uses it. */
  interface Session extends AutoCloseable {

    /**
     * Quantizes every tensor of the bucket of {@code byteLength} bytes that starts
     * {@code handleOffset} bytes into the allocation {@code handle} names on the GPU
     * {@code gpuUuid}, into {@code sink}; the GPU has read all of it when this returns (also when
     * it throws).
     *
     * @throws IllegalArgumentException when CUDA refuses the handle (not a live allocation of a
     *     process on this GPU) or the bucket does not lie within the allocation
     * @throws GpuFailureException when the GPU fails while reading it
     */
    QuantError quantizeBucket(String gpuUuid, byte[] handle, long handleOffset, long byteLength,
        List<BucketTensor> tensors, TensorSink sink) throws IOException;

    /** Unmaps every allocation this session mapped. */
    @Override
    void close();
  }

  /**
   * The reader behind {@code quantizer}, or null when it cannot read device memory: a CPU
   * quantizer, or a GPU one that has failed and handed over to the CPU. ({@code cuda:all} is one
   * reader for all its GPUs.)
   */
  static CudaIpcReader of(Quantizer quantizer) {
    if (quantizer instanceof FallbackQuantizer f) {
      return f.ipcReader();
    }
    return quantizer instanceof CudaIpcReader r ? r : null;
  }
}
