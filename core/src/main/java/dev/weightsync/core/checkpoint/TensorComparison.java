package dev.weightsync.core.checkpoint;

import dev.weightsync.core.quant.Bf16;
import dev.weightsync.core.quant.E4m3;
import dev.weightsync.core.tensor.DType;
import dev.weightsync.core.tensor.TensorSource;
import dev.weightsync.core.tensor.TensorSpec;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.Locale;

/**
 * One tensor of two folders (same name, dtype and shape) compared element by element, in windows,
 * so tensors larger than the heap are fine. A quantized tensor that differs is also dequantized
 * with each folder's own scales (FP8: {@code X.weight} with {@code X.weight_scale_inv}; INT4:
 * {@code X.weight_packed} with {@code X.weight_scale}) to say how far apart the weights are.
 */
final class TensorComparison {
  private TensorComparison() {}

  private static final int WINDOW = 16 << 20;

  /** A line describing the difference, or null when the bytes are identical. */
  static String compare(String name, TensorSpec spec, CheckpointFolder exp, CheckpointFolder act)
      throws IOException {
    TensorSource e = exp.source(name);
    TensorSource a = act.source(name);
    DType dtype = spec.dtype();
    int width = dtype.byteSize();
    long length = spec.byteLength();
    long differing = 0;
    double largest = 0;
    for (long off = 0; off < length; off += WINDOW) {
      int n = (int) Math.min(WINDOW, length - off);
      ByteBuffer ew = e.window(off, n);
      ByteBuffer aw = a.window(off, n);
      if (ew.equals(aw)) {
        continue;
      }
      for (int i = 0; i < n; i += width) {
        if (!sameElement(ew, aw, i, width)) {
          differing++;
          if (dtype.isFloatingPoint()) {
            largest = Math.max(largest, Math.abs(value(ew, dtype, i) - value(aw, dtype, i)));
          }
        }
      }
    }
    if (differing == 0) {
      return null;
    }
    StringBuilder line = new StringBuilder(name).append(": ").append(differing).append(" of ")
        .append(spec.elementCount()).append(" elements differ");
    if (dtype.isFloatingPoint() && dtype != DType.F8_E4M3) {
      line.append(", largest difference ").append(format(largest));
    }
    Dequantized.Difference d = Dequantized.compare(name, spec, exp, act);
    if (d != null) {
      line.append("; after dequantization ").append(d.elements()).append(" differ, largest difference ")
          .append(format(d.largest()));
    }
    return line.toString();
  }

  private static boolean sameElement(ByteBuffer a, ByteBuffer b, int at, int width) {
    for (int k = 0; k < width; k++) {
      if (a.get(at + k) != b.get(at + k)) {
        return false;
      }
    }
    return true;
  }

  /** The element at byte offset {@code at} as a number (floating-point dtypes only). */
  static double value(ByteBuffer w, DType dtype, int at) {
    return switch (dtype) {
      case BF16 -> Bf16.toFloat(w.getShort(at));
      case F16 -> Bf16.halfToFloat(w.getShort(at));
      case F32 -> w.getFloat(at);
      case F64 -> w.getDouble(at);
      case F8_E4M3 -> E4m3.decode(w.get(at));
      default -> throw new IllegalArgumentException("not a floating-point dtype: " + dtype);
    };
  }

  static String format(double v) {
    return String.format(Locale.ROOT, "%.4g", v);
  }
}
