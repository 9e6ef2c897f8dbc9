package dev.weightsync.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.weightsync.client.Tensor;
import dev.weightsync.core.checkpoint.CheckpointFolder;
import dev.weightsync.core.tensor.TensorSpec;
import dev.weightsync.proto.v1.EngineOutcome;
import dev.weightsync.proto.v1.UpdateWeightsResponse;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A trainer pushes BF16 weights; the engine is given exactly the spec's FP8/INT4 folder. */
class SidecarEndToEndIT {

  static final List<String> SGLANG_SEQUENCE = List.of("/pause_generation", "/flush_cache",
      "/begin_weight_update", "/update_weights_from_disk", "/end_weight_update",
      "/get_weight_version", "/continue_generation"); // confirmed before it is resumed

  @TempDir Path tmp;

  @Test
  void pushingTheGoldenModelLoadsTheGoldenFp8Folder() throws Exception {
    try (SidecarHarness h = new SidecarHarness(tmp, Map.of("format", "fp8-block"))) {
      UpdateWeightsResponse r = h.client.pushFolder(Launcher.golden("bf16"), "100", 0, 1);
      assertThat(r.getEnginesList()).singleElement().satisfies(e -> {
        assertThat(e.getOutcome()).isEqualTo(EngineOutcome.LOADED);
        assertThat(e.getLoadedVersion()).isEqualTo("100");
      });
      assertThat(h.engine.routes()).isEqualTo(SGLANG_SEQUENCE);
      var load = h.engine.calls().stream()
          .filter(c -> c.route().equals("/update_weights_from_disk")).findFirst().orElseThrow().body();
      assertThat(load.get("weight_version").asText()).isEqualTo("100");
      assertThat(load.get("model_path").asText()).isEqualTo(r.getStagedPath());
      assertThat(h.engine.paused()).isFalse();
      assertThat(h.engine.weightVersion()).isEqualTo("100");
      assertThat(r.getTensorsIn()).isEqualTo(Launcher.counts(Launcher.golden("bf16")).tensors());
      assertThat(r.getTensorsOut()).isEqualTo(Launcher.counts(Launcher.golden("fp8")).tensors());
      Launcher.Result cmp = Launcher.compare(Launcher.golden("fp8"), Path.of(r.getStagedPath()));
      assertThat(cmp.exitCode()).as(cmp.stdout()).isZero();
      assertThat(h.stagingEntries()).containsExactly("100");
    }
  }

  @Test
  void int4GroupOutputEqualsTheGoldenInt4Folder() throws Exception {
    try (SidecarHarness h = new SidecarHarness(tmp, Map.of("format", "int4-group"))) {
      UpdateWeightsResponse r = h.client.pushFolder(Launcher.golden("bf16"), "v1", 0, 1);
      Launcher.Result cmp = Launcher.compare(Launcher.golden("int4_g128"), Path.of(r.getStagedPath()));
      assertThat(cmp.exitCode()).as(cmp.stdout()).isZero();
    }
  }

  @Test
  void aVersionInTwoPartsFromTwoClientsLoadsOnceWhenBothHaveCommitted() throws Exception {
    try (SidecarHarness h = new SidecarHarness(tmp, Map.of("format", "fp8-block"));
        var second = dev.weightsync.client.WeightSyncClient.connect("127.0.0.1:" + h.sidecar.port());
        CheckpointFolder golden = CheckpointFolder.open(Launcher.golden("bf16"))) {
      List<Tensor> a = new ArrayList<>();
      List<Tensor> b = new ArrayList<>();
      for (TensorSpec t : golden.tensors()) {
        (t.name().contains("layers.1.") ? b : a).add(new Tensor(t, golden.source(t.name())));
      }
      CompletableFuture<UpdateWeightsResponse> first =
          CompletableFuture.supplyAsync(() -> push(h.client, "7", 0, a));
      awaitCommitted(h, "7", 0);
      // part 0 is in and committed, part 1 has not arrived: nothing reaches the engine
      assertThat(h.engine.routes()).isEmpty();
      UpdateWeightsResponse r1 = push(second, "7", 1, b);
      UpdateWeightsResponse r0 = first.get();
      assertThat(r0.getStagedPath()).isEqualTo(r1.getStagedPath());
      assertThat(r0.getPartIndex()).isZero();
      assertThat(r1.getPartIndex()).isEqualTo(1);
      assertThat(h.engine.routes()).isEqualTo(SGLANG_SEQUENCE);
      assertThat(Launcher.compare(Launcher.golden("fp8"), Path.of(r0.getStagedPath())).exitCode()).isZero();
    }
  }

  @Test
  void oneVersionOverParallelStreamsEqualsTheGoldenFolderAndANanInOnePartFailsItAtOnce()
      throws Exception {
    try (SidecarHarness h = new SidecarHarness(tmp, Map.of("format", "fp8-block"));
        CheckpointFolder golden = CheckpointFolder.open(Launcher.golden("bf16"))) {
      UpdateWeightsResponse r = h.client.pushFolderParallel(Launcher.golden("bf16"), "par-1", 3);
      assertThat(r.getTensorsIn()).isEqualTo(Launcher.counts(Launcher.golden("bf16")).tensors());
      assertThat(Launcher.compare(Launcher.golden("fp8"), Path.of(r.getStagedPath())).exitCode())
          .isZero();
      assertThat(h.engine.weightVersion()).isEqualTo("par-1");

      List<Tensor> poisoned = new ArrayList<>();
      for (TensorSpec t : golden.tensors()) {
        poisoned.add(new Tensor(t, golden.source(t.name())));
      }
      String victim = "model.layers.1.mlp.down_proj.weight";
      TensorSpec spec = golden.tensors().stream().filter(t -> t.name().equals(victim))
          .findFirst().orElseThrow();
      java.nio.ByteBuffer nan = java.nio.ByteBuffer.allocate((int) spec.byteLength())
          .order(java.nio.ByteOrder.LITTLE_ENDIAN);
      nan.putShort(2 * 77, (short) 0x7FC0); // BF16 NaN at element 77
      poisoned.replaceAll(t -> t.spec().name().equals(victim) ? Tensor.of(spec, nan) : t);
      long start = System.nanoTime();
      assertThatThrownBy(() -> h.client.pushParallel("par-2", poisoned, 3))
          .isInstanceOfSatisfying(io.grpc.StatusRuntimeException.class, e -> {
            assertThat(e.getStatus().getCode()).isEqualTo(io.grpc.Status.Code.INVALID_ARGUMENT);
            assertThat(e.getStatus().getDescription()).contains(victim, "element 77");
          });
      // the other parts were cancelled, not left waiting for the harness's 30 s part timeout
      assertThat((System.nanoTime() - start) / 1e9).isLessThan(30);
      assertThat(h.engine.weightVersion()).isEqualTo("par-1");
      UpdateWeightsResponse again = h.client.pushFolderParallel(Launcher.golden("bf16"), "par-3", 3);
      assertThat(again.getEnginesList()).singleElement()
          .satisfies(e -> assertThat(e.getOutcome()).isEqualTo(EngineOutcome.LOADED));
    }
  }

  private static UpdateWeightsResponse push(dev.weightsync.client.WeightSyncClient c, String v,
      int part, List<Tensor> tensors) {
    try {
      return c.push(v, part, 2, tensors);
    } catch (java.io.IOException e) {
      throw new java.io.UncheckedIOException(e);
    }
  }

  @Test
  void anEngineConfigChoosesTheFormatAndTheAdminKeyIsSent() throws Exception {
    try (SidecarHarness h = new SidecarHarness(tmp, Map.of(
        "quantization-config", Launcher.golden("fp8_ue8m0").resolve("config.json").toString(),
        "sglang-admin-key", "s3cret"), "s3cret")) {
      UpdateWeightsResponse r = h.client.pushFolder(Launcher.golden("bf16"), "9", 0, 1);
      assertThat(r.getEngines(0).getOutcome()).isEqualTo(EngineOutcome.LOADED);
      assertThat(Launcher.compare(Launcher.golden("fp8_ue8m0"), Path.of(r.getStagedPath())).exitCode())
          .isZero();
    }
  }

  /** Waits (up to 30 s) until the sidecar's status shows {@code part} of {@code version} committed. */
  private static void awaitCommitted(SidecarHarness h, String version, int part) throws Exception {
    for (long end = System.nanoTime() + 30_000_000_000L; System.nanoTime() < end; ) {
      if (h.client.status().getInProgressList().stream().anyMatch(p ->
          p.getWeightVersion().equals(version) && p.getPartsCommittedList().contains(part))) {
        return;
      }
      Thread.sleep(10);
    }
    throw new AssertionError("part " + part + " of " + version + " never showed committed");
  }
}
