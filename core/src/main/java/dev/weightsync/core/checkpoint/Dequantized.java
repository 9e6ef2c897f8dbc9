package dev.weightsync.core.checkpoint;

import dev.weightsync.core.quant.Bf16;
import dev.weightsync.core.quant.E4m3;
import dev.weightsync.core.tensor.DType;
import dev.weightsync.core.tensor.TensorSource;
import dev.weightsync.core.tensor.TensorSpec;
import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * A quantized tensor of two folders dequantized with each folder's own scales (in f32, as
 * docs/quantization.md's error statistics do), to say how many weights differ and by how much.
 */
final class Dequantized {
  private Dequantized() {}

  private static final long WINDOW_BYTES = 16 << 20;

  record Difference(long elements, double largest) {}

  /** Counts the dequantized weights that differ, and the largest difference. */
  private static final class Tally {
    private long differing;
    private double largest;

    void add(float expected, float actual) {
      if (Float.compare(expected, actual) != 0) {
        differing++;
        largest = Math.max(largest, Math.abs((double) expected - actual));
      }
    }

    Difference difference() {
      return new Difference(differing, largest);
    }
  }

  /** Null when {@code name} is not a quantized weight with scales of the expected shape in both. */
  static Difference compare(String name, TensorSpec spec, CheckpointFolder exp, CheckpointFolder act)
      throws IOException {
    if (spec.dtype() == DType.F8_E4M3 && spec.rank() == 2) {
      return fp8(name, spec, exp, act);
    }
    if (spec.dtype() == DType.I32 && spec.rank() == 2 && name.endsWith(".weight_packed")) {
      return int4(name, spec, exp, act);
    }
    return null;
  }

  private static Difference fp8(String name, TensorSpec spec, CheckpointFolder exp,
      CheckpointFolder act) throws IOException {
    long n = spec.rows();
    long k = spec.cols();
    long[] scaleShape = {(n + 127) / 128, (k + 127) / 128};
    String scale = name + "_scale_inv";
    float[] es = scales(exp, scale, DType.F32, scaleShape);
    float[] as = scales(act, scale, DType.F32, scaleShape);
    if (es == null || as == null) {
      return null;
    }
    TensorSource e = exp.source(name);
    TensorSource a = act.source(name);
    Tally tally = new Tally();
    long step = Math.max(1, WINDOW_BYTES / k);
    for (long r0 = 0; r0 < n; r0 += step) {
      int rows = (int) Math.min(step, n - r0);
      ByteBuffer ew = e.window(r0 * k, Math.toIntExact(rows * k));
      ByteBuffer aw = a.window(r0 * k, Math.toIntExact(rows * k));
      for (int i = 0; i < rows * (int) k; i++) {
        long r = r0 + i / k;
        int block = (int) ((r / 128) * scaleShape[1] + (i % k) / 128);
        float ev = E4m3.decode(ew.get(i)) * es[block];
        float av = E4m3.decode(aw.get(i)) * as[block];
        tally.add(ev, av);
      }
    }
    return tally.difference();
  }

  private static Difference int4(String name, TensorSpec spec, CheckpointFolder exp,
      CheckpointFolder act) throws IOException {
    long n = spec.rows();
    long words = spec.cols();
    long k = words * 8;
    String scale = name.substring(0, name.length() - "_packed".length()) + "_scale";
    TensorSpec scaleSpec = exp.contains(scale) ? exp.spec(scale) : null;
    if (scaleSpec == null || scaleSpec.rank() != 2 || scaleSpec.cols() == 0
        || k % scaleSpec.cols() != 0) {
      return null;
    }
    long groups = scaleSpec.cols();
    long g = k / groups;
    long[] scaleShape = {n, groups};
    float[] es = scales(exp, scale, DType.BF16, scaleShape);
    float[] as = scales(act, scale, DType.BF16, scaleShape);
    if (es == null || as == null) {
      return null;
    }
    TensorSource e = exp.source(name);
    TensorSource a = act.source(name);
    Tally tally = new Tally();
    long step = Math.max(1, WINDOW_BYTES / (words * 4));
    for (long r0 = 0; r0 < n; r0 += step) {
      int rows = (int) Math.min(step, n - r0);
      ByteBuffer ew = e.window(r0 * words * 4, Math.toIntExact(rows * words * 4));
      ByteBuffer aw = a.window(r0 * words * 4, Math.toIntExact(rows * words * 4));
      for (int w = 0; w < rows * (int) words; w++) {
        long r = r0 + w / words;
        int ep = ew.getInt(w * 4);
        int ap = aw.getInt(w * 4);
        for (int j = 0; j < 8; j++) {
          long c = (w % words) * 8 + j;
          int at = (int) (r * groups + c / g);
          float ev = (((ep >>> (4 * j)) & 0xF) - 8) * es[at];
          float av = (((ap >>> (4 * j)) & 0xF) - 8) * as[at];
          tally.add(ev, av);
        }
      }
    }
    return tally.difference();
  }

  /** The whole scale tensor as f32, or null when it is absent or of another dtype or shape. */
  private static float[] scales(CheckpointFolder f, String name, DType dtype, long[] shape)
      throws IOException {
    TensorSpec s = f.contains(name) ? f.spec(name) : null;
    if (s == null || s.dtype() != dtype || !java.util.Arrays.equals(s.shape(), shape)
        || s.elementCount() > Integer.MAX_VALUE / 4) {
      return null;
    }
    int count = (int) s.elementCount();
    ByteBuffer w = f.source(name).window(0, Math.toIntExact(s.byteLength()));
    float[] out = new float[count];
    for (int i = 0; i < count; i++) {
      out[i] = dtype == DType.F32 ? w.getFloat(i * 4) : Bf16.toFloat(w.getShort(i * 2));
    }
    return out;
  }
}
