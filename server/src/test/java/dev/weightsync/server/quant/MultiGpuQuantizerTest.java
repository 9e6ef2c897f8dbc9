package dev.weightsync.server.quant;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.weightsync.core.quant.Bf16;
import dev.weightsync.core.quant.CpuQuantizer;
import dev.weightsync.core.quant.TensorPlan;
import dev.weightsync.core.tensor.DType;
import dev.weightsync.core.tensor.TensorSource;
import dev.weightsync.core.tensor.TensorSpec;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import org.junit.jupiter.api.Test;

/**
 * {@code --device cuda:all} over a node of fake GPUs ({@link FakeGpus}): which GPU reads a bucket
 * or quantizes bytes, when each is opened, what a failing one does to the others. The bytes
 * themselves are the CPU oracle's on every path; on a real GPU the same routing is run by
 * tools/gpu/push-cuda.sh with DEVICE=cuda:all.
 */
class MultiGpuQuantizerTest {

  private static final String[] UUIDS = {"GPU-00000000-0000-0000-0000-00000000000a",
      "GPU-00000000-0000-0000-0000-00000000000b", "GPU-00000000-0000-0000-0000-00000000000c"};
  private static final TensorPlan PLAN =
      new TensorPlan.Fp8Block(TensorSpec.of("model.layers.0.mlp.up_proj.weight", DType.BF16, 256, 384), false);

  private static ByteBuffer weights(int seed) {
    ByteBuffer b = ByteBuffer.allocate(256 * 384 * 2).order(ByteOrder.LITTLE_ENDIAN);
    for (int i = 0; i < 256 * 384; i++) {
      b.putShort(Bf16.fromFloat(((i * 31 + seed) % 211 - 105) * 0.003f));
    }
    return b.flip();
  }

  private static Map<String, byte[]> oracle(ByteBuffer in) throws Exception {
    try (CpuQuantizer cpu = new CpuQuantizer(1)) {
      PlanSink s = new PlanSink(PLAN);
      cpu.quantize(PLAN, TensorSource.of(in.duplicate()), s);
      return s.bytes;
    }
  }

  private static void assertSameBytes(PlanSink got, Map<String, byte[]> want) {
    for (String name : want.keySet()) {
      assertThat(got.bytes.get(name)).as(name).isEqualTo(want.get(name));
    }
  }

  /** A bucket of one tensor at offset 4096 of an allocation on {@code uuid}. */
  private static PlanSink readBucket(CudaIpcReader.Session s, FakeGpus gpus, String uuid,
      ByteBuffer weights) throws Exception {
    ByteBuffer memory = ByteBuffer.allocate(4096 + weights.remaining());
    memory.position(4096);
    memory.put(weights.duplicate()).clear();
    byte[] handle = gpus.allocate(uuid, memory);
    PlanSink sink = new PlanSink(PLAN);
    s.quantizeBucket(uuid, handle, 0, memory.capacity(),
        List.of(new CudaIpcReader.BucketTensor(PLAN, 4096)), sink);
    return sink;
  }

  @Test
  void bucketsAreReadOnTheGpuTheyNameWhichOpensOnFirstUse() throws Exception {
    FakeGpus gpus = new FakeGpus(UUIDS);
    try (MultiGpuQuantizer q = new MultiGpuQuantizer(gpus, 1, true, MultiGpuQuantizer.LEAST_BUSY)) {
      assertThat(q.device()).isEqualTo("cuda:all");
      assertThat(q.opened()).as("nothing is opened before it is used").isZero();
      assertThat(q.serves(UUIDS[2])).isTrue();
      assertThat(q.serves("MIG-00000000-0000-0000-0000-00000000000c")).isTrue();
      try (CudaIpcReader.Session s = q.openSession()) {
        PlanSink rank2 = readBucket(s, gpus, UUIDS[2], weights(2));
        assertSameBytes(rank2, oracle(weights(2)));
        assertThat(q.opened()).isEqualTo(1);
        assertThat(gpus.device(2).buckets.get()).isEqualTo(1);

        PlanSink rank0 = readBucket(s, gpus, UUIDS[0], weights(0));
        assertSameBytes(rank0, oracle(weights(0)));
        assertThat(gpus.device(0).buckets.get()).isEqualTo(1);
        assertThat(gpus.device(2).buckets.get()).as("each bucket on its own GPU").isEqualTo(1);
        assertThat(gpus.device(1)).as("a GPU no trainer uses is never opened").isNull();
        assertThat(q.openHandles()).as("one mapping per GPU while the part lasts").isEqualTo(2);
      }
      assertThat(q.openHandles()).as("closing the part's session unmaps on every GPU").isZero();
    }
    assertThat(gpus.opened).allMatch(d -> d.closed);
  }

  /**
   * Staged pages are locked by a GPU already open (portable locks serve every GPU), none before
   * one is; and not by a GPU whose work has moved to the CPU.
   */
  @Test
  void pagesAreLockedByAnOpenGpuThatStillWorks() throws Exception {
    FakeGpus gpus = new FakeGpus(UUIDS);
    try (MultiGpuQuantizer q = new MultiGpuQuantizer(gpus, 1, true, 2)) {
      ByteBuffer staged = ByteBuffer.allocateDirect(4096);
      assertThat(q.pageLocker().lock(staged)).as("no GPU is open yet").isNull();
      assertThat(q.opened()).as("locking opens none").isZero();
      try (CudaIpcReader.Session s = q.openSession()) {
        readBucket(s, gpus, UUIDS[2], weights(2));
      }
      var locked = q.pageLocker().lock(staged);
      assertThat(locked).isNotNull();
      assertThat(gpus.device(2).pageLocks.get()).isEqualTo(1);
      locked.unlock();
      assertThat(gpus.device(2).pageLocks.get()).isZero();

      gpus.broken.add(2);
      q.quantize(PLAN, TensorSource.of(weights(1)), new PlanSink(PLAN)); // the CPU takes over
      assertThat(q.pageLocker().lock(staged)).as("cuda:2 has failed").isNull();
    }
  }

  @Test
  void aBucketOnAGpuThisSidecarCannotSeeIsRefusedNamingTheOnesItCan() throws Exception {
    FakeGpus gpus = new FakeGpus(UUIDS[0], UUIDS[1]);
    try (MultiGpuQuantizer q = new MultiGpuQuantizer(gpus, 1, true, MultiGpuQuantizer.LEAST_BUSY);
        CudaIpcReader.Session s = q.openSession()) {
      assertThat(q.serves(UUIDS[2])).isFalse();
      assertThat(q.gpus()).contains("cuda:0 " + UUIDS[0]).contains("cuda:1 " + UUIDS[1]);
      assertThatThrownBy(() -> readBucket(s, gpus, UUIDS[2], weights(0)))
          .isInstanceOf(IllegalArgumentException.class).hasMessageContaining(UUIDS[2])
          .hasMessageContaining(UUIDS[0]);
      assertThat(q.opened()).isZero();
    }
  }

  @Test
  void bytesGoToTheLeastBusyGpu() throws Exception {
    FakeGpus gpus = new FakeGpus(UUIDS);
    CountDownLatch release = new CountDownLatch(1);
    gpus.hold.put(0, release);
    try (MultiGpuQuantizer q = new MultiGpuQuantizer(gpus, 1, true, MultiGpuQuantizer.LEAST_BUSY)) {
      PlanSink first = new PlanSink(PLAN);
      CompletableFuture<?> busy = CompletableFuture.runAsync(() -> {
        try {
          q.quantize(PLAN, TensorSource.of(weights(1)), first);
        } catch (Exception e) {
          throw new RuntimeException(e);
        }
      });
      gpus.entered.await(); // all idle: the lowest ordinal took it, and holds it
      assertThat(gpus.device(0).tensors.get()).isEqualTo(1);

      PlanSink second = new PlanSink(PLAN);
      q.quantize(PLAN, TensorSource.of(weights(2)), second);
      assertThat(gpus.device(1).tensors.get()).as("cuda:0 is busy: the next idle GPU").isEqualTo(1);
      assertSameBytes(second, oracle(weights(2)));

      gpus.hold.remove(0);
      release.countDown();
      busy.join();
      assertSameBytes(first, oracle(weights(1)));
      q.quantize(PLAN, TensorSource.of(weights(3)), new PlanSink(PLAN));
      assertThat(gpus.device(0).tensors.get()).as("all idle again: the lowest ordinal").isEqualTo(2);
      assertThat(gpus.device(2)).as("never needed, never opened").isNull();
    }
  }

  @Test
  void whileAGpuOpensTheOthersAndTheMetricsDoNotWait() throws Exception {
    FakeGpus gpus = new FakeGpus(UUIDS[0], UUIDS[1]);
    CountDownLatch gate = new CountDownLatch(1);
    gpus.openGate = gate;
    try (MultiGpuQuantizer q = new MultiGpuQuantizer(gpus, 1, true, 0)) {
      CompletableFuture<?> first = CompletableFuture.runAsync(() -> {
        try {
          q.quantize(PLAN, TensorSource.of(weights(1)), new PlanSink(PLAN));
        } catch (Exception e) {
          throw new RuntimeException(e);
        }
      });
      gpus.opening.await(); // cuda:0's context is being created, and takes its time
      org.junit.jupiter.api.Assertions.assertTimeoutPreemptively(java.time.Duration.ofSeconds(20),
          () -> {
            assertThat(q.openHandles()).isZero(); // a metrics scrape
            assertThat(q.serves(UUIDS[1])).isTrue();
            assertThat(q.gpus()).contains(UUIDS[0]);
            assertThat(q.note()).isEmpty();
          });
      assertThat(first).as("cuda:0 is still opening").isNotDone();
      gate.countDown();
      first.join();
      assertThat(gpus.device(0).tensors.get()).isEqualTo(1);
    }
  }

  @Test
  void aConfiguredBytesGpuTakesAllBytes() throws Exception {
    FakeGpus gpus = new FakeGpus(UUIDS);
    try (MultiGpuQuantizer q = new MultiGpuQuantizer(gpus, 1, true, 2)) {
      for (int i = 0; i < 3; i++) {
        q.quantizeAsync(PLAN, TensorSource.of(weights(i)), new PlanSink(PLAN)).join();
      }
      assertThat(gpus.device(2).tensors.get()).isEqualTo(3);
      assertThat(q.opened()).isEqualTo(1);
    }
    assertThatThrownBy(() -> new MultiGpuQuantizer(gpus, 1, true, 3))
        .isInstanceOf(IllegalStateException.class).hasMessageContaining("bytes-gpu 3")
        .hasMessageContaining("cuda:0 to cuda:2");
    assertThatThrownBy(() -> new MultiGpuQuantizer(new FakeGpus(), 1, true, -1))
        .isInstanceOf(IllegalStateException.class).hasMessageContaining("no CUDA device");
  }

  @Test
  void aGpuThatFailsHandsItsWorkToTheCpuAndStopsReadingBucketsWhileTheOthersGoOn()
      throws Exception {
    FakeGpus gpus = new FakeGpus(UUIDS[0], UUIDS[1]);
    gpus.broken.add(0);
    try (MultiGpuQuantizer q = new MultiGpuQuantizer(gpus, 1, true, MultiGpuQuantizer.LEAST_BUSY)) {
      PlanSink got = new PlanSink(PLAN);
      q.quantize(PLAN, TensorSource.of(weights(5)), got);
      assertSameBytes(got, oracle(weights(5))); // redone on the CPU, as --gpu-failure cpu says
      assertThat(q.note()).contains("cuda:0").contains("CUDA_ERROR_ILLEGAL_ADDRESS");
      assertThat(q.serves(UUIDS[0])).as("a failed GPU reads no more buckets").isFalse();
      assertThat(q.serves(UUIDS[1])).isTrue();

      q.quantize(PLAN, TensorSource.of(weights(6)), new PlanSink(PLAN));
      assertThat(gpus.device(1).tensors.get()).as("bytes now go to the GPU that works")
          .isEqualTo(1);
      try (CudaIpcReader.Session s = q.openSession()) {
        assertSameBytes(readBucket(s, gpus, UUIDS[1], weights(7)), oracle(weights(7)));
      }
    }
  }

  @Test
  void aGpuThatCannotBeOpenedIsLeftOutAndNamed() throws Exception {
    FakeGpus gpus = new FakeGpus(UUIDS[0], UUIDS[1]);
    gpus.cannotOpen.add(0);
    try (MultiGpuQuantizer q = new MultiGpuQuantizer(gpus, 1, false, MultiGpuQuantizer.LEAST_BUSY)) {
      q.quantize(PLAN, TensorSource.of(weights(1)), new PlanSink(PLAN));
      assertThat(gpus.device(1).tensors.get()).isEqualTo(1);
      assertThat(q.serves(UUIDS[0])).isFalse();
      assertThat(q.note()).contains("cuda:0").contains("cannot be used")
          .contains("CUDA_ERROR_OUT_OF_MEMORY");

      gpus.broken.add(1);
      assertThatThrownBy(() -> q.quantize(PLAN, TensorSource.of(weights(2)), new PlanSink(PLAN)))
          .as("gpu-failure fail: the failure reaches the caller").isInstanceOf(GpuFailureException.class)
          .hasMessageContaining("cuda:1");
      gpus.broken.remove(1);
      q.quantize(PLAN, TensorSource.of(weights(3)), new PlanSink(PLAN));
      assertThat(gpus.device(1).tensors.get()).as("and the next tensor tries that GPU again")
          .isEqualTo(3);
    }
  }

  @Test
  void whenNoGpuCanBeOpenedTheCpuTakesTheBytesOrTheyAreRefused() throws Exception {
    FakeGpus gpus = new FakeGpus(UUIDS[0], UUIDS[1]);
    gpus.cannotOpen.addAll(List.of(0, 1));
    try (MultiGpuQuantizer q = new MultiGpuQuantizer(gpus, 1, true, MultiGpuQuantizer.LEAST_BUSY)) {
      PlanSink got = new PlanSink(PLAN);
      q.quantize(PLAN, TensorSource.of(weights(4)), got);
      assertSameBytes(got, oracle(weights(4)));
      assertThat(q.note()).contains("cuda:0").contains("cuda:1");
    }
    try (MultiGpuQuantizer q = new MultiGpuQuantizer(gpus, 1, false, MultiGpuQuantizer.LEAST_BUSY)) {
      assertThatThrownBy(() -> q.quantize(PLAN, TensorSource.of(weights(4)), new PlanSink(PLAN)))
          .isInstanceOf(GpuFailureException.class).hasMessageContaining("no GPU can quantize")
          .hasMessageContaining("cuda:0").hasMessageContaining("cuda:1");
    }
  }

  @Test
  void cudaAllWithoutACudaDriverIsRefusedNamingTheDevice() {
    org.junit.jupiter.api.Assumptions.assumeTrue(noCudaDriver(),
        "this machine has a CUDA driver: the refusal is for machines without one");
    assertThatThrownBy(() -> Quantizers.create("cuda:all", 1, true, 4, MultiGpuQuantizer.LEAST_BUSY))
        .isInstanceOf(IllegalStateException.class).hasMessageContaining("--device cuda:all");
  }

  private static boolean noCudaDriver() {
    return !java.nio.file.Files.exists(java.nio.file.Path.of("/dev/nvidiactl"));
  }
}
