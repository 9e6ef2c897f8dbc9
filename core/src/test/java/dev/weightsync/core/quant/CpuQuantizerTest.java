package dev.weightsync.core.quant;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.weightsync.core.MemorySink;
import dev.weightsync.core.tensor.DType;
import dev.weightsync.core.tensor.TensorSource;
import dev.weightsync.core.tensor.TensorSpec;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Random;
import org.junit.jupiter.api.Test;

class CpuQuantizerTest {

  private static final long[][] ODD_SHAPES = {
      {1, 1}, {1, 300}, {129, 257}, {300, 1000}, {255, 384}, {2, 128}, {513, 136}};

  /** Random BF16 values spanning many magnitudes, with zeros and sign mixes. */
  static ByteBuffer randomBf16(long elements, long seed) {
    Random r = new Random(seed);
    ByteBuffer b = ByteBuffer.allocate((int) elements * 2).order(ByteOrder.LITTLE_ENDIAN);
    for (long i = 0; i < elements; i++) {
      float v = (float) (r.nextGaussian() * Math.pow(10, r.nextInt(9) - 6));
      if (r.nextInt(50) == 0) {
        v = 0f;
      }
      b.putShort(Bf16.fromFloat(v));
    }
    return b.flip();
  }

  static MemorySink run(Quantizer q, TensorPlan plan, ByteBuffer input) throws IOException {
    MemorySink sink = new MemorySink(plan.outputs());
    q.quantize(plan, TensorSource.of(input), sink);
    return sink;
  }

  @Test
  void bytesDoNotDependOnTheThreadCount() throws IOException {
    try (CpuQuantizer one = new CpuQuantizer(1); CpuQuantizer many = new CpuQuantizer(5)) {
      int seed = 0;
      for (long[] shape : ODD_SHAPES) {
        TensorSpec t = TensorSpec.of("model.layers.0.mlp.experts.0.up_proj.weight", DType.BF16,
            shape);
        ByteBuffer in = randomBf16(t.elementCount(), seed++);
        for (TensorPlan plan : plansFor(t)) {
          MemorySink a = run(one, plan, in);
          MemorySink b = run(many, plan, in);
          for (TensorSpec out : plan.outputs()) {
            assertThat(b.get(out.name())).as(plan + " " + out).isEqualTo(a.get(out.name()));
          }
          QuantError ea = one.quantize(plan, TensorSource.of(in), new MemorySink(plan.outputs()));
          QuantError eb = many.quantize(plan, TensorSource.of(in), new MemorySink(plan.outputs()));
          assertThat(eb).isEqualTo(ea);
        }
      }
    }
  }

  /**
   * A band that fails does not end the call while another band still reads the source: the
   * caller unmaps the source when the call ends, and a read after that would crash the JVM. Band 0
   * fails while band 1 is inside its read; band 1 is let go only after the call has returned (or
   * after a second, if the call correctly waits for it), so a call that returns early is caught.
   */
  @Test
  void aFailingBandWaitsForTheOthersBeforeTheCallEnds() throws Exception {
    TensorSpec t = TensorSpec.of("model.layers.0.mlp.up_proj.weight", DType.BF16, 256, 128);
    ByteBuffer bytes = randomBf16(t.elementCount(), 7);
    java.util.concurrent.CountDownLatch inBand1 = new java.util.concurrent.CountDownLatch(1);
    java.util.concurrent.CountDownLatch letGo = new java.util.concurrent.CountDownLatch(1);
    java.util.List<String> events = java.util.Collections.synchronizedList(new java.util.ArrayList<>());
    TensorSource source = (offset, length) -> {
      if (offset == 0) {
        try {
          inBand1.await();
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
        }
        throw new IOException("injected read failure");
      }
      inBand1.countDown();
      try {
        letGo.await(1, java.util.concurrent.TimeUnit.SECONDS);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
      events.add("band 1 read");
      return TensorSource.of(bytes).window(offset, length);
    };
    try (CpuQuantizer q = new CpuQuantizer(2)) {
      TensorPlan plan = new TensorPlan.Fp8Block(t, false);
      assertThatThrownBy(() -> q.quantize(plan, source, new MemorySink(plan.outputs())))
          .hasMessageContaining("injected read failure");
      events.add("call returned");
      letGo.countDown();
    }
    assertThat(events).containsExactly("band 1 read", "call returned");
  }

  static java.util.List<TensorPlan> plansFor(TensorSpec t) {
    java.util.List<TensorPlan> plans = new java.util.ArrayList<>();
    plans.add(new TensorPlan.Fp8Block(t, false));
    plans.add(new TensorPlan.Fp8Block(t, true));
    for (int g : new int[] {8, 32, 128}) {
      if (t.cols() % g == 0) {
        plans.add(new TensorPlan.Int4Group(t, g));
      }
    }
    return plans;
  }

  @Test
  void int4PackingRoundTripsAndDequantizesWithinHalfAScale() throws IOException {
    TensorSpec t = TensorSpec.of("model.layers.0.mlp.experts.3.down_proj.weight", DType.BF16, 7, 256);
    ByteBuffer in = randomBf16(t.elementCount(), 42);
    TensorPlan.Int4Group plan = new TensorPlan.Int4Group(t, 32);
    MemorySink out;
    try (CpuQuantizer q = new CpuQuantizer(2)) {
      out = run(q, plan, in);
    }
    ByteBuffer packed = ByteBuffer.wrap(out.get("model.layers.0.mlp.experts.3.down_proj.weight_packed"))
        .order(ByteOrder.LITTLE_ENDIAN);
    ByteBuffer scales = ByteBuffer.wrap(out.get("model.layers.0.mlp.experts.3.down_proj.weight_scale"))
        .order(ByteOrder.LITTLE_ENDIAN);
    ByteBuffer shape = ByteBuffer.wrap(out.get("model.layers.0.mlp.experts.3.down_proj.weight_shape"))
        .order(ByteOrder.LITTLE_ENDIAN);
    assertThat(shape.getInt(0)).isEqualTo(7);
    assertThat(shape.getInt(4)).isEqualTo(256);
    for (int r = 0; r < 7; r++) {
      for (int c = 0; c < 256; c++) {
        int word = packed.getInt(4 * (r * 32 + c / 8));
        int u = (word >>> (4 * (c % 8))) & 0xF;
        assertThat(u).isBetween(1, 15); // -8 is never produced
        float s = Bf16.toFloat(scales.getShort(2 * (r * 8 + c / 32)));
        float w = Bf16.toFloat(in.getShort(2 * (r * 256 + c)));
        assertThat((double) Math.abs((u - 8) * s - w)).isLessThanOrEqualTo(s * 0.51 + 1e-6);
      }
    }
    // Packing then unpacking the codes gives the codes back.
    int[] codes = {1, 15, 8, 3, 12, 7, 9, 2};
    int word = 0;
    for (int j = 0; j < 8; j++) {
      word |= codes[j] << (4 * j);
    }
    for (int j = 0; j < 8; j++) {
      assertThat((word >>> (4 * j)) & 0xF).isEqualTo(codes[j]);
    }
  }

  @Test
  void fp8ErrorStatisticsFollowTheSpec() throws IOException {
    TensorSpec t = TensorSpec.of("w.weight", DType.BF16, 3, 5);
    ByteBuffer in = ByteBuffer.allocate(30).order(ByteOrder.LITTLE_ENDIAN);
    float[] values = {1f, -2f, 3f, 0.1f, 448f, 7f, 0f, -0.5f, 100f, 2.5f, 1e-3f, -1e-3f, 5f, 6f, 9f};
    for (float v : values) {
      in.putShort(Bf16.fromFloat(v));
    }
    in.flip();
    QuantError e;
    try (CpuQuantizer q = new CpuQuantizer(1)) {
      e = q.quantize(new TensorPlan.Fp8Block(t, false), TensorSource.of(in),
          new MemorySink(new TensorPlan.Fp8Block(t, false).outputs()));
    }
    // amax 448 gives s = 1: values are encoded directly, so the error is e4m3's rounding alone.
    double maxAbs = 0;
    double err = 0;
    double ref = 0;
    for (float v : values) {
      float w = Bf16.toFloat(Bf16.fromFloat(v));
      float deq = E4m3.decode(E4m3.encode(w));
      maxAbs = Math.max(maxAbs, Math.abs(deq - w));
      err += (double) (deq - w) * (deq - w);
      ref += (double) w * w;
    }
    assertThat(e.maxAbs()).isEqualTo(maxAbs);
    assertThat(e.relRms()).isCloseTo(Math.sqrt(err / ref), org.assertj.core.data.Offset.offset(1e-15));
    assertThat(e.elements()).isEqualTo(15);
  }

  @Test
  void nonFiniteValuesAreRefusedNamingTensorAndElement() {
    TensorSpec t = TensorSpec.of("model.layers.3.mlp.up_proj.weight", DType.BF16, 130, 200);
    ByteBuffer in = randomBf16(t.elementCount(), 7);
    in.putShort(2 * (129 * 200 + 150), (short) 0x7FC0); // NaN at row 129, column 150
    try (CpuQuantizer q = new CpuQuantizer(3)) {
      for (TensorPlan plan : java.util.List.of(new TensorPlan.Fp8Block(t, false),
          new TensorPlan.Int4Group(t, 8), new TensorPlan.PassThrough(t, false))) {
        assertThatThrownBy(() -> run(q, plan, in))
            .isInstanceOf(NonFiniteWeightException.class)
            .hasMessageContaining("model.layers.3.mlp.up_proj.weight")
            .hasMessageContaining("element " + (129 * 200 + 150));
      }
    }
    in.putShort(2 * (129 * 200 + 150), (short) 0xFF80); // -Inf
    try (CpuQuantizer q = new CpuQuantizer(1)) {
      assertThatThrownBy(() -> run(q, new TensorPlan.Fp8Block(t, true), in))
          .isInstanceOf(NonFiniteWeightException.class)
          .hasMessageContaining("-Infinity");
    }
  }

  @Test
  void f32AndF16InputsFollowTheSameRules() throws IOException {
    // The same values as BF16, F16 and F32 give the same codes when they are exactly representable.
    float[] values = {1f, -2f, 0.5f, 3.25f, -0.125f, 100f, 0f, -0f};
    TensorSpec bf = TensorSpec.of("a.weight", DType.BF16, 1, 8);
    TensorSpec f32 = TensorSpec.of("a.weight", DType.F32, 1, 8);
    ByteBuffer b16 = ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN);
    ByteBuffer b32 = ByteBuffer.allocate(32).order(ByteOrder.LITTLE_ENDIAN);
    for (float v : values) {
      b16.putShort(Bf16.fromFloat(v));
      b32.putFloat(v);
    }
    b16.flip();
    b32.flip();
    try (CpuQuantizer q = new CpuQuantizer(1)) {
      MemorySink x = run(q, new TensorPlan.Int4Group(bf, 8), b16);
      MemorySink y = run(q, new TensorPlan.Int4Group(f32, 8), b32);
      assertThat(y.get("a.weight_packed")).isEqualTo(x.get("a.weight_packed"));
      MemorySink p = run(q, new TensorPlan.Fp8Block(bf, false), b16);
      MemorySink r = run(q, new TensorPlan.Fp8Block(f32, false), b32);
      assertThat(r.get("a.weight")).isEqualTo(p.get("a.weight"));
    }
  }
}
