package dev.weightsync.core.quant;

import dev.weightsync.core.tensor.PageLocker;
import dev.weightsync.core.tensor.TensorSink;
import dev.weightsync.core.tensor.TensorSource;
import java.io.IOException;
import java.util.concurrent.CompletableFuture;

/**
 * Turns one input tensor into its output tensors per its {@link TensorPlan}. Implementations (CPU,
 * CUDA) are interchangeable and produce identical bytes; the CPU one is the oracle.
 *
 * <p>Thread-safe: several tensors may be quantized at once.
 */
public interface Quantizer extends AutoCloseable {

  /** Where the arithmetic runs, e.g. {@code cpu} or {@code cuda:0}. */
  String device();

  /**
   * Writes every output tensor of {@code plan} into {@code sink} and returns the error statistics
   * of the quantized elements ({@link QuantError#NONE} for a pass-through).
   *
   * @throws NonFiniteWeightException when the input holds a NaN or infinity; in that case some
   *     output may already have been written to the sink, which the caller then discards
   */
  QuantError quantize(TensorPlan plan, TensorSource source, TensorSink sink) throws IOException;

  /**
   * Starts {@link #quantize} and returns at once where the implementation can overlap tensors
   * (the GPU copies tensor i+1 in while tensor i is computed and tensor i-1 copied out). The
   * future completes once every output is in the sink, or fails with what {@code quantize} would
   * have thrown; either way it completes only once no thread of the implementation reads
   * {@code source} any more (the caller may unmap it then), and {@code source} must stay readable
   * until then. This default runs synchronously.
   * {@link QuantQueue} bounds how many are in flight.
   */
  default CompletableFuture<QuantError> quantizeAsync(TensorPlan plan, TensorSource source,
      TensorSink sink) {
    try {
      return CompletableFuture.completedFuture(quantize(plan, source, sink));
    } catch (IOException | RuntimeException e) {
      return CompletableFuture.failedFuture(e);
    }
  }

  /**
   * Page-locks host memory for this quantizer's device, so that it copies results straight into
   * a sink's memory ({@link dev.weightsync.core.tensor.TensorSink#direct}); none for the CPU.
   */
  default PageLocker pageLocker() {
    return PageLocker.NONE;
  }

  @Override
  void close();
}
