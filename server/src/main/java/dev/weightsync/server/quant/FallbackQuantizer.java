package dev.weightsync.server.quant;

import dev.weightsync.core.quant.Failures;
import dev.weightsync.core.quant.QuantError;
import dev.weightsync.core.quant.Quantizer;
import dev.weightsync.core.quant.TensorPlan;
import dev.weightsync.core.tensor.PageLocker;
import dev.weightsync.core.tensor.TensorSink;
import dev.weightsync.core.tensor.TensorSource;
import java.io.IOException;
import java.util.concurrent.CompletableFuture;
import java.util.logging.Logger;

/**
 * The GPU quantizer with a policy for GPU failures ({@code --gpu-failure}). {@code cpu}: the tensor
 * is redone on the CPU (the sink takes positioned writes, so the CPU's bytes simply replace
 * whatever the GPU wrote) and every later tensor goes to the CPU too, since a CUDA context that
 * failed once is usually broken for good; {@code fail}: the failure reaches the caller, the version
 * fails and the next one tries the GPU again. Bad input (NaN, infinity) is never a GPU failure.
 */
public final class FallbackQuantizer implements Quantizer {

  private static final Logger LOG = Logger.getLogger(FallbackQuantizer.class.getName());

  private final Quantizer gpu;
  private final Quantizer cpu;
  private final boolean fallBack;
  private volatile String failure;

  public FallbackQuantizer(Quantizer gpu, Quantizer cpu, boolean fallBack) {
    this.gpu = gpu;
    this.cpu = cpu;
    this.fallBack = fallBack;
  }

  /** Empty while the GPU works; else what failed and that the CPU took over. */
  public String note() {
    String f = failure;
    return f == null ? "" : "the GPU failed (" + f + "); quantizing on the CPU";
  }

  /** The GPU's IPC reader while the GPU works; null once the CPU has taken over. */
  CudaIpcReader ipcReader() {
    return failure == null ? CudaIpcReader.of(gpu) : null;
  }

  @Override
  public String device() {
    return failure == null ? gpu.device() : cpu.device();
  }

  /** The GPU's page locks while it works; none once the CPU has taken over. */
  @Override
  public PageLocker pageLocker() {
    return region -> failure == null ? gpu.pageLocker().lock(region) : null;
  }

  @Override
  public QuantError quantize(TensorPlan plan, TensorSource source, TensorSink sink)
      throws IOException {
    if (failure != null) {
      return cpu.quantize(plan, source, sink);
    }
    try {
      return gpu.quantize(plan, source, sink);
    } catch (GpuFailureException e) {
      return afterFailure(e, plan, source, sink);
    }
  }

  @Override
  public CompletableFuture<QuantError> quantizeAsync(TensorPlan plan, TensorSource source,
      TensorSink sink) {
    if (failure != null) {
      return cpu.quantizeAsync(plan, source, sink);
    }
    return gpu.quantizeAsync(plan, source, sink).exceptionallyCompose(t -> {
      Throwable c = Failures.cause(t);
      if (!(c instanceof GpuFailureException g)) {
        return CompletableFuture.failedFuture(c);
      }
      try {
        return CompletableFuture.completedFuture(afterFailure(g, plan, source, sink));
      } catch (IOException | RuntimeException e) {
        return CompletableFuture.failedFuture(e);
      }
    });
  }

  private QuantError afterFailure(GpuFailureException e, TensorPlan plan, TensorSource source,
      TensorSink sink) throws IOException {
    if (!fallBack) {
      throw e;
    }
    if (failure == null) {
      failure = e.getMessage();
      LOG.warning("quantizing " + plan.input().name() + " on the GPU failed (" + e.getMessage()
          + "); redoing it and all later tensors on the CPU (--gpu-failure=cpu)");
    }
    return cpu.quantize(plan, source, sink);
  }

  @Override
  public void close() {
    try {
      gpu.close();
    } finally {
      cpu.close();
    }
  }
}
