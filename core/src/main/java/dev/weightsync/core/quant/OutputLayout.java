package dev.weightsync.core.quant;

import dev.weightsync.core.tensor.TensorSink;
import java.io.IOException;

/**
 * Where the output bytes of a band of rows go within a tensor's outputs, and what is written once
 * per tensor. Every quantizer path (the CPU's bands, {@link RowBand}, the GPU's bands) places its
 * bytes by this, so they agree by construction.
 *
 * <p>FP8 block: the e4m3 bytes one per element in row order ({@code row * k}); the scales one
 * float32 per 128 x 128 block, block rows in order ({@code row / 128 * ceil(k / 128) * 4}).
 * INT4 group: eight values packed in an int32, row order ({@code row * k / 8 * 4}); the scales one
 * bfloat16 per group ({@code row * k / g * 2}); {@code weight_shape} once per tensor.
 */
public final class OutputLayout {

  private OutputLayout() {
  }

  /**
   * Byte offsets, one per output of {@code plan} (in {@link TensorPlan#outputs()} order), at which
   * the outputs of input row {@code row} start; -1 for an output written once per tensor. For FP8
   * {@code row} must start a 128-row block.
   */
  public static long[] offsetsAtRow(TensorPlan plan, long row) {
    long k = plan.input().cols();
    if (plan instanceof TensorPlan.Fp8Block) {
      if (row % TensorPlan.Fp8Block.BLOCK != 0) {
        throw new IllegalArgumentException("row " + row + " does not start a 128-row block");
      }
      long blockCols = (k + TensorPlan.Fp8Block.BLOCK - 1) / TensorPlan.Fp8Block.BLOCK;
      return new long[] {row * k, row / TensorPlan.Fp8Block.BLOCK * blockCols * 4};
    }
    if (plan instanceof TensorPlan.Int4Group p) {
      return new long[] {row * (k / 8) * 4, row * (k / p.groupSize()) * 2, -1};
    }
    throw new IllegalArgumentException(plan.input().name() + " is copied whole, not in row bands");
  }

  /** Writes what belongs to the whole tensor rather than a band: INT4's {@code weight_shape}. */
  public static void writeWholeTensorOutputs(TensorPlan plan, TensorSink sink) throws IOException {
    if (plan instanceof TensorPlan.Int4Group p) {
      sink.write(p.outputs().get(2).name(), 0, p.shapeTensor());
    }
  }
}
