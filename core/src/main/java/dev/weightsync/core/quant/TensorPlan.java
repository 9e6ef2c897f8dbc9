package dev.weightsync.core.quant;

import dev.weightsync.core.tensor.DType;
import dev.weightsync.core.tensor.TensorSpec;
import java.util.List;

/** What happens to one input tensor: which output tensors it becomes, and how. */
public sealed interface TensorPlan {

  TensorSpec input();

  /** The output tensors, in the order they are written. */
  List<TensorSpec> outputs();

  /** The module name: the tensor name without a trailing {@code .weight}. */
  static String moduleName(String tensorName) {
    return tensorName.endsWith(".weight")
        ? tensorName.substring(0, tensorName.length() - ".weight".length())
        : tensorName;
  }

  /**
   * Copied unchanged. {@code indivisible} marks an INT4 candidate whose row length is not a
   * multiple of the group size: it stays in its dtype and is added to the output's ignore list.
   */
  record PassThrough(TensorSpec input, boolean indivisible) implements TensorPlan {
    @Override
    public List<TensorSpec> outputs() {
      return List.of(input);
    }
  }

  /** 128x128 blockwise FP8; {@code ue8m0} selects power-of-two scales. */
  record Fp8Block(TensorSpec input, boolean ue8m0) implements TensorPlan {
    public static final int BLOCK = 128;

    @Override
    public List<TensorSpec> outputs() {
      long n = input.rows();
      long k = input.cols();
      return List.of(
          TensorSpec.of(input.name(), DType.F8_E4M3, n, k),
          TensorSpec.of(input.name() + "_scale_inv", DType.F32,
              ceilDiv(n, BLOCK), ceilDiv(k, BLOCK)));
    }
  }

  /** Symmetric INT4 in groups of {@code groupSize} along each row, packed eight to an int32. */
  record Int4Group(TensorSpec input, int groupSize) implements TensorPlan {
    @Override
    public List<TensorSpec> outputs() {
      String module = moduleName(input.name());
      long n = input.rows();
      long k = input.cols();
      return List.of(
          TensorSpec.of(module + ".weight_packed", DType.I32, n, k / 8),
          TensorSpec.of(module + ".weight_scale", DType.BF16, n, k / groupSize),
          TensorSpec.of(module + ".weight_shape", DType.I32, 2));
    }

    /** The bytes of the {@code weight_shape} output: the input's rows and columns as int32. */
    public java.nio.ByteBuffer shapeTensor() {
      java.nio.ByteBuffer shape = java.nio.ByteBuffer.allocate(8)
          .order(java.nio.ByteOrder.LITTLE_ENDIAN);
      shape.putInt(Math.toIntExact(input.rows())).putInt(Math.toIntExact(input.cols())).flip();
      return shape;
    }
  }

  private static long ceilDiv(long a, long b) {
    return (a + b - 1) / b;
  }
}
