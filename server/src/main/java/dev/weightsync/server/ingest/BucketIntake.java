package dev.weightsync.server.ingest;

import static dev.weightsync.server.ingest.Refusals.invalid;
import static dev.weightsync.server.ingest.Refusals.printable;

import dev.weightsync.core.quant.QuantError;
import dev.weightsync.core.quant.Quantizer;
import dev.weightsync.core.quant.TensorPlan;
import dev.weightsync.proto.v1.CudaBucket;
import dev.weightsync.proto.v1.CudaTensor;
import dev.weightsync.server.quant.CudaIpcReader;
import dev.weightsync.server.stage.ShardSet;
import io.grpc.Status;
import io.grpc.StatusException;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;

/**
 * A part's CUDA IPC buckets: each is checked (its number, handle, tensors inside it and apart,
 * the GPU it lives on) and its tensors quantized straight from the trainer's GPU memory before
 * {@link #take} returns, so the trainer may reuse the memory once the bucket is acknowledged.
 * The trainer's allocations stay mapped for the part and are unmapped by {@link #close}.
 */
final class BucketIntake implements AutoCloseable {

  /**
   * Files a part's outputs are spread over once it sends CUDA buckets: the GPU's slots copy
   * results out side by side, and one file would serialize them (see ShardSet).
   */
  static final int BUCKET_SHARD_FILES = 8;

  /** Declares one tensor of a bucket to the part (limits, claims, plan), as a chunk would. */
  interface Declare {
    TensorPlan tensor(CudaTensor t) throws StatusException;
  }

  /** Reserves staging space, as the part does for its tensors. */
  interface Reserve {
    void bytes(String what, long bytes) throws StatusException;
  }

  private final Quantizer quantizer;
  private final ShardSet shard;
  private final Reserve reserve;
  private int received;
  private QuantError error = QuantError.NONE;
  private double seconds;
  private CudaIpcReader.Session ipc;

  BucketIntake(Quantizer quantizer, ShardSet shard, Reserve reserve) {
    this.quantizer = quantizer;
    this.shard = shard;
    this.reserve = reserve;
  }

  /** Checks and quantizes one bucket; returns its tensors' input bytes. */
  long take(CudaBucket b, Declare declare) throws StatusException {
    if (b.getIndex() != received) {
      throw invalid("CUDA bucket " + Integer.toUnsignedString(b.getIndex()) + " arrived where"
          + " bucket " + received + " was due (number them 0, 1, 2... in sending order)");
    }
    if (b.getIpcHandle().size() != CudaIpcReader.HANDLE_BYTES) {
      throw invalid("CUDA bucket " + b.getIndex() + ": ipc_handle has " + b.getIpcHandle().size()
          + " bytes; a cudaIpcMemHandle_t has " + CudaIpcReader.HANDLE_BYTES);
    }
    if (b.getTensorsCount() == 0) {
      throw invalid("CUDA bucket " + b.getIndex() + " holds no tensors");
    }
    long length = b.getByteLength();
    List<CudaIpcReader.BucketTensor> refs = new ArrayList<>();
    ByteRanges used = new ByteRanges();
    long bytes = 0;
    for (CudaTensor c : b.getTensorsList()) {
      TensorPlan plan = declare.tensor(c);
      long size = plan.input().byteLength();
      long offset = c.getOffset();
      long end = offset + size;
      if (offset < 0 || end > length || end < offset) {
        throw invalid("tensor " + c.getName() + ": [" + offset + ", " + end + ") lies outside"
            + " CUDA bucket " + b.getIndex() + " of " + length + " bytes");
      }
      if (!used.add(offset, size)) {
        throw invalid("tensor " + c.getName() + " overlaps another tensor of CUDA bucket "
            + b.getIndex());
      }
      refs.add(new CudaIpcReader.BucketTensor(plan, offset));
      bytes += size;
    }
    // A malformed bucket is refused as such above; a well-formed one may still not be readable.
    CudaIpcReader reader = CudaIpcReader.of(quantizer);
    if (reader == null) {
      throw Status.FAILED_PRECONDITION.withDescription("this sidecar quantizes on "
          + quantizer.device() + " and cannot read GPU memory by CUDA IPC handle; send the"
          + " weights as bytes (weightsync_client.push, or TensorChunk data)").asException();
    }
    if (!reader.serves(b.getGpuUuid())) {
      throw Status.FAILED_PRECONDITION.withDescription("CUDA bucket " + b.getIndex() + " is on "
          + printable(b.getGpuUuid()) + " but this sidecar reads CUDA buckets on " + reader.gpus()
          + "; send the weights as bytes, or to a sidecar on that GPU").asException();
    }
    received++;
    long start = System.nanoTime();
    try {
      if (ipc == null) {
        reserve.bytes("the headers of " + (BUCKET_SHARD_FILES - 1) + " more staged shards",
            (BUCKET_SHARD_FILES - 1) * ShardSet.FILE_OVERHEAD);
        ipc = reader.openSession();
        shard.spread(BUCKET_SHARD_FILES);
      }
      error = error.plus(ipc.quantizeBucket(b.getGpuUuid(), b.getIpcHandle().toByteArray(),
          b.getHandleOffset(), length, refs, shard));
    } catch (IllegalArgumentException e) { // a NaN, a refused handle, a bucket out of range
      throw invalid("CUDA bucket " + b.getIndex() + ": " + e.getMessage());
    } catch (IOException | RuntimeException e) {
      throw Status.INTERNAL.withDescription("CUDA bucket " + b.getIndex() + ": reading it on the"
          + " GPU failed: " + e.getMessage()).withCause(e).asException();
    }
    seconds += (System.nanoTime() - start) / 1e9;
    return bytes;
  }

  /** The error statistics of every bucket's tensors. */
  QuantError error() {
    return error;
  }

  /** Seconds spent reading and quantizing buckets. */
  double seconds() {
    return seconds;
  }

  /** Unmaps the trainer's allocations; idempotent. */
  @Override
  public void close() {
    if (ipc != null) {
      ipc.close();
      ipc = null;
    }
  }
}
