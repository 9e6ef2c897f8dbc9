package dev.weightsync.core.quant;

import dev.weightsync.core.tensor.TensorSink;
import dev.weightsync.core.tensor.TensorSource;
import dev.weightsync.core.tensor.TensorSpec;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;

/**
 * A band of whole rows of a tensor, quantized on its own into the whole tensor's outputs, so that
 * a receiver can start on the first rows of a tensor while the rest is still on the wire. The
 * spec's blocks never cross a band: FP8 bands are whole 128-row blocks, INT4 bands whole rows
 * (groups run along a row). Every output byte is the one quantizing the whole tensor writes.
 */
public final class RowBand {

  private final TensorPlan whole;
  private final long firstRow;
  private final TensorPlan piece;
  /** Where each output of the band starts within the whole tensor's output, in bytes. */
  private final long[] outputOffsets;

  private RowBand(TensorPlan whole, long firstRow, long rows) {
    this.whole = whole;
    this.firstRow = firstRow;
    TensorSpec in = whole.input();
    TensorSpec band = TensorSpec.of(in.name(), in.dtype(), rows, in.cols());
    outputOffsets = OutputLayout.offsetsAtRow(whole, firstRow);
    piece = whole instanceof TensorPlan.Fp8Block p ? new TensorPlan.Fp8Block(band, p.ue8m0())
        : new TensorPlan.Int4Group(band, ((TensorPlan.Int4Group) whole).groupSize());
  }

  /**
   * Rows a band must be a multiple of (the last band of a tensor may be shorter): 128 for FP8, 1
   * for INT4; 0 when the plan is not quantized in row bands (a copy).
   */
  public static int rowMultiple(TensorPlan plan) {
    if (plan instanceof TensorPlan.Fp8Block) {
      return TensorPlan.Fp8Block.BLOCK;
    }
    return plan instanceof TensorPlan.Int4Group ? 1 : 0;
  }

  /**
   * Rows {@code [firstRow, firstRow + rows)} of {@code plan}'s input; {@code firstRow} must be a
   * multiple of {@link #rowMultiple}, and so must {@code rows} unless the band ends the tensor.
   */
  public static RowBand of(TensorPlan plan, long firstRow, long rows) {
    int multiple = rowMultiple(plan);
    long total = multiple == 0 ? 0 : plan.input().rows();
    if (multiple == 0 || firstRow % multiple != 0 || rows < 1 || firstRow + rows > total
        || (rows % multiple != 0 && firstRow + rows != total)) {
      throw new IllegalArgumentException("rows [" + firstRow + ", " + (firstRow + rows) + ") of "
          + plan.input() + " are not a band of whole " + multiple + "-row blocks");
    }
    return new RowBand(plan, firstRow, rows);
  }

  /**
   * Quantizes the band, whose input bytes {@code source} holds from the band's first row, into
   * the whole tensor's outputs in {@code sink}. A NaN is reported at its index in the whole
   * tensor. INT4's {@code weight_shape} is not written: {@link #finish} writes it once.
   */
  public CompletableFuture<QuantError> quantizeAsync(Quantizer quantizer, TensorSource source,
      TensorSink sink) {
    List<TensorSpec> outputs = piece.outputs();
    TensorSink shifted = (name, offset, data) -> {
      for (int i = 0; i < outputs.size(); i++) {
        if (outputs.get(i).name().equals(name)) {
          if (outputOffsets[i] >= 0) {
            sink.write(name, outputOffsets[i] + offset, data);
          }
          return;
        }
      }
      throw new IllegalArgumentException("band of " + whole.input().name() + " wrote " + name);
    };
    return quantizer.quantizeAsync(piece, source, shifted).handle((error, failure) -> {
      if (failure == null) {
        return error;
      }
      Throwable cause = Failures.cause(failure);
      if (cause instanceof NonFiniteWeightException n) {
        throw new NonFiniteWeightException(n.tensor(),
            firstRow * whole.input().cols() + n.elementIndex(), n.value());
      }
      throw failure instanceof CompletionException c ? c : new CompletionException(failure);
    });
  }

  /** Writes what belongs to the whole tensor rather than a band: INT4's {@code weight_shape}. */
  public static void finish(TensorPlan plan, TensorSink sink) throws java.io.IOException {
    OutputLayout.writeWholeTensorOutputs(plan, sink);
  }
}
