package dev.weightsync.client;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.weightsync.core.tensor.DType;
import dev.weightsync.core.tensor.TensorSpec;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

class PartSplitterTest {

  private static Tensor tensor(String name, int rows) {
    TensorSpec spec = TensorSpec.of(name, DType.BF16, rows, 64);
    return Tensor.of(spec, ByteBuffer.allocate((int) spec.byteLength()));
  }

  @Test
  void partsCarryAboutEqualBytesAndKeepTheCallersOrder() {
    List<Tensor> tensors = new ArrayList<>();
    int[] rows = {1000, 10, 10, 500, 500, 10, 990, 20};
    for (int i = 0; i < rows.length; i++) {
      tensors.add(tensor("t" + i, rows[i]));
    }
    List<List<Tensor>> parts = PartSplitter.split(tensors, 3);
    assertThat(parts).hasSize(3);
    assertThat(parts.stream().flatMap(List::stream).map(t -> t.spec().name()).sorted())
        .containsExactlyElementsOf(tensors.stream().map(t -> t.spec().name()).sorted().toList());
    long[] bytes = parts.stream().mapToLong(p -> p.stream()
        .mapToLong(t -> t.spec().byteLength()).sum()).toArray();
    long total = java.util.Arrays.stream(bytes).sum();
    for (long b : bytes) {
      assertThat(b).isBetween(total / 3 - 64 * 2 * 500L, total / 3 + 64 * 2 * 500L);
    }
    for (List<Tensor> p : parts) {
      List<Integer> order = p.stream().map(t -> Integer.parseInt(t.spec().name().substring(1)))
          .toList();
      assertThat(order).isSorted();
    }
  }

  @Test
  void neverAnEmptyPart() {
    List<List<Tensor>> parts = PartSplitter.split(List.of(tensor("a", 4), tensor("b", 0)), 8);
    assertThat(parts).hasSize(2).allSatisfy(p -> assertThat(p).hasSize(1));
    assertThatThrownBy(() -> PartSplitter.split(List.of(), 2))
        .isInstanceOf(IllegalArgumentException.class);
    assertThatThrownBy(() -> PartSplitter.split(List.of(tensor("a", 1)), 0))
        .isInstanceOf(IllegalArgumentException.class);
  }
}
