package dev.weightsync.server.quant;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.weightsync.core.quant.Bf16;
import dev.weightsync.core.quant.CpuQuantizer;
import dev.weightsync.core.quant.NonFiniteWeightException;
import dev.weightsync.core.quant.QuantError;
import dev.weightsync.core.quant.Quantizer;
import dev.weightsync.core.quant.TensorPlan;
import dev.weightsync.core.tensor.DType;
import dev.weightsync.core.tensor.TensorSink;
import dev.weightsync.core.tensor.TensorSource;
import dev.weightsync.core.tensor.TensorSpec;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

/**
 * The --gpu-failure policy, with a stand-in for the GPU that fails the way CudaQuantizer does (a
 * GpuFailureException after writing garbage): no GPU is needed to check what happens next.
 */
class FallbackQuantizerTest {

  private static final TensorPlan PLAN =
      new TensorPlan.Fp8Block(TensorSpec.of("w", DType.BF16, 256, 256), false);

  /** Writes 0x7F over the outputs, then fails like a lost device. */
  private static final class BrokenGpu implements Quantizer {
    final AtomicInteger calls = new AtomicInteger();
    boolean closed;

    @Override
    public String device() {
      return "cuda:0";
    }

    @Override
    public QuantError quantize(TensorPlan plan, TensorSource source, TensorSink sink)
        throws java.io.IOException {
      calls.incrementAndGet();
      for (TensorSpec t : plan.outputs()) {
        byte[] junk = new byte[(int) t.byteLength()];
        Arrays.fill(junk, (byte) 0x7F);
        sink.write(t.name(), 0, ByteBuffer.wrap(junk));
      }
      throw new GpuFailureException("CUDA error on cuda:0: CUDA_ERROR_ILLEGAL_ADDRESS", null);
    }

    @Override
    public void close() {
      closed = true;
    }
  }

  private static ByteBuffer input(boolean withNaN) {
    ByteBuffer b = ByteBuffer.allocate(256 * 256 * 2).order(ByteOrder.LITTLE_ENDIAN);
    for (int i = 0; i < 256 * 256; i++) {
      b.putShort(Bf16.fromFloat(withNaN && i == 77 ? Float.NaN : (i % 97 - 48) * 0.01f));
    }
    return b.flip();
  }

  @Test
  void cpuPolicyRedoesTheTensorOnTheCpuAndStaysThere() throws Exception {
    BrokenGpu gpu = new BrokenGpu();
    try (CpuQuantizer oracle = new CpuQuantizer(1);
        FallbackQuantizer q = new FallbackQuantizer(gpu, new CpuQuantizer(1), true)) {
      PlanSink want = new PlanSink(PLAN);
      oracle.quantize(PLAN, TensorSource.of(input(false)), want);
      assertThat(q.note()).isEmpty();
      assertThat(q.device()).isEqualTo("cuda:0");

      PlanSink got = new PlanSink(PLAN);
      QuantError e = q.quantizeAsync(PLAN, TensorSource.of(input(false)), got).join();
      assertThat(e.elements()).isEqualTo(256 * 256);
      for (String name : want.bytes.keySet()) {
        assertThat(got.bytes.get(name)).as(name).isEqualTo(want.bytes.get(name)); // junk replaced
      }
      assertThat(q.device()).isEqualTo("cpu");
      assertThat(q.note()).contains("the GPU failed").contains("CUDA_ERROR_ILLEGAL_ADDRESS");

      q.quantize(PLAN, TensorSource.of(input(false)), new PlanSink(PLAN));
      assertThat(gpu.calls).hasValue(1); // later tensors no longer try the broken GPU
    }
    assertThat(gpu.closed).isTrue();
  }

  @Test
  void failPolicyFailsTheTensorAndTriesTheGpuAgainNextTime() throws Exception {
    BrokenGpu gpu = new BrokenGpu();
    try (FallbackQuantizer q = new FallbackQuantizer(gpu, new CpuQuantizer(1), false)) {
      assertThatThrownBy(() -> q.quantize(PLAN, TensorSource.of(input(false)), new PlanSink(PLAN)))
          .isInstanceOf(GpuFailureException.class).hasMessageContaining("ILLEGAL_ADDRESS");
      CompletableFuture<QuantError> f =
          q.quantizeAsync(PLAN, TensorSource.of(input(false)), new PlanSink(PLAN));
      assertThat(f).isCompletedExceptionally();
      assertThat(gpu.calls).hasValue(2);
      assertThat(q.note()).isEmpty();
    }
  }

  @Test
  void badInputIsNotAGpuFailure() {
    CpuQuantizer arithmetic = new CpuQuantizer(1);
    Quantizer nanGpu = new Quantizer() { // a working GPU: the CPU's arithmetic under a GPU's name
      @Override
      public String device() {
        return "cuda:0";
      }

      @Override
      public QuantError quantize(TensorPlan plan, TensorSource source, TensorSink sink)
          throws java.io.IOException {
        return arithmetic.quantize(plan, source, sink);
      }

      @Override
      public void close() {
        arithmetic.close();
      }
    };
    try (FallbackQuantizer q = new FallbackQuantizer(nanGpu, new CpuQuantizer(1), true)) {
      assertThatThrownBy(() -> q.quantize(PLAN, TensorSource.of(input(true)), new PlanSink(PLAN)))
          .isInstanceOf(NonFiniteWeightException.class);
      assertThat(q.note()).isEmpty();
      assertThat(q.device()).isEqualTo("cuda:0");
    }
  }
}
