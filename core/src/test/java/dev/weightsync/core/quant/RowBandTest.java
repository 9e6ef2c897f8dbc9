package dev.weightsync.core.quant;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.weightsync.core.MemorySink;
import dev.weightsync.core.tensor.DType;
import dev.weightsync.core.tensor.TensorSource;
import dev.weightsync.core.tensor.TensorSpec;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletionException;
import org.junit.jupiter.api.Test;

/** Quantizing a tensor band by band, bands in any order, writes the whole tensor's bytes. */
class RowBandTest {

  private static final long[][] SHAPES = {{1, 256}, {129, 256}, {300, 384}, {640, 136}, {1000, 64}};

  @Test
  void bandsOfAnySizeInAnyOrderGiveTheWholeTensorsBytes() throws Exception {
    Random random = new Random(11);
    try (CpuQuantizer q = new CpuQuantizer(2)) {
      int seed = 100;
      for (long[] shape : SHAPES) {
        TensorSpec t = TensorSpec.of("model.layers.2.mlp.up_proj.weight", DType.BF16, shape);
        ByteBuffer in = CpuQuantizerTest.randomBf16(t.elementCount(), seed++);
        for (TensorPlan plan : CpuQuantizerTest.plansFor(t)) {
          MemorySink whole = CpuQuantizerTest.run(q, plan, in);
          for (int trial = 0; trial < 3; trial++) {
            MemorySink banded = new MemorySink(plan.outputs());
            List<long[]> bands = randomBands(plan, random);
            Collections.shuffle(bands, random);
            for (long[] b : bands) {
              long rowBytes = t.cols() * 2;
              ByteBuffer slice = in.slice((int) (b[0] * rowBytes), (int) (b[1] * rowBytes));
              RowBand.of(plan, b[0], b[1]).quantizeAsync(q, TensorSource.of(slice), banded).join();
            }
            RowBand.finish(plan, banded);
            for (TensorSpec out : plan.outputs()) {
              assertThat(banded.get(out.name())).as(plan + " " + out + " bands " + bands.size())
                  .isEqualTo(whole.get(out.name()));
            }
          }
        }
      }
    }
  }

  /** Cuts the rows into bands of whole blocks, of random sizes, the last one ragged. */
  private static List<long[]> randomBands(TensorPlan plan, Random random) {
    int multiple = RowBand.rowMultiple(plan);
    long rows = plan.input().rows();
    List<long[]> bands = new ArrayList<>();
    for (long first = 0; first < rows; ) {
      long n = Math.min(rows - first, multiple * (1 + random.nextInt(3)));
      bands.add(new long[] {first, n});
      first += n;
    }
    return bands;
  }

  @Test
  void aNanIsReportedAtItsIndexInTheWholeTensor() {
    TensorSpec t = TensorSpec.of("model.layers.0.self_attn.o_proj.weight", DType.BF16, 384, 128);
    ByteBuffer in = CpuQuantizerTest.randomBf16(t.elementCount(), 3);
    long index = 256L * 128 + 5; // third 128-row band
    in.putShort((int) index * 2, (short) 0x7FC0);
    TensorPlan plan = new TensorPlan.Fp8Block(t, false);
    try (CpuQuantizer q = new CpuQuantizer(1)) {
      ByteBuffer third = in.slice(256 * 128 * 2, 128 * 128 * 2);
      assertThatThrownBy(() -> RowBand.of(plan, 256, 128)
          .quantizeAsync(q, TensorSource.of(third), new MemorySink(plan.outputs())).join())
          .isInstanceOf(CompletionException.class)
          .cause().isInstanceOfSatisfying(NonFiniteWeightException.class, e -> {
            assertThat(e.elementIndex()).isEqualTo(index);
            assertThat(e.getMessage()).contains("element " + index);
          });
    }
  }

  @Test
  void bandsMustBeWholeBlocks() {
    TensorSpec t = TensorSpec.of("w", DType.BF16, 300, 128);
    TensorPlan fp8 = new TensorPlan.Fp8Block(t, false);
    assertThatThrownBy(() -> RowBand.of(fp8, 64, 128)).isInstanceOf(IllegalArgumentException.class);
    assertThatThrownBy(() -> RowBand.of(fp8, 0, 100)).isInstanceOf(IllegalArgumentException.class);
    assertThat(RowBand.of(fp8, 256, 44)).isNotNull(); // the ragged last band
    assertThatThrownBy(() -> RowBand.of(new TensorPlan.PassThrough(t, false), 0, 1))
        .isInstanceOf(IllegalArgumentException.class);
  }
}
