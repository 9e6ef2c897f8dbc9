package dev.weightsync.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.weightsync.cli.engine.StandInEngine;
import dev.weightsync.client.WeightSyncClient;
import dev.weightsync.core.checkpoint.CheckpointFolder;
import dev.weightsync.core.checkpoint.CheckpointWriter;
import dev.weightsync.core.tensor.TensorSpec;
import dev.weightsync.proto.v1.EngineOutcome;
import dev.weightsync.proto.v1.Header;
import dev.weightsync.proto.v1.Payload;
import dev.weightsync.proto.v1.UpdateWeightsRequest;
import dev.weightsync.proto.v1.UpdateWeightsResponse;
import io.grpc.StatusRuntimeException;
import java.io.IOException;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The disaggregated layout as separate processes: two trainer-side sidecars, each sent one part
 * of a version by its trainer, relay the quantized parts to three engine-side sidecars (one
 * split over three connections as sub-parts, one over one), each of which gathers both parts and
 * drives its engine (a stand-in engine in this JVM, over HTTP).
 */
class RelayProcessesIT {

  @TempDir Path tmp;
  private final List<StandInEngine> engines = new ArrayList<>();
  private final Process[] engineSide = new Process[3];
  private final int[] enginePorts = new int[3];
  private final List<Process> trainerSide = new ArrayList<>();
  private final int[] trainerPorts = new int[2];

  private static int freePort() throws IOException {
    try (ServerSocket s = new ServerSocket(0)) {
      return s.getLocalPort();
    }
  }

  private static Process start(Path log, List<String> args) throws IOException {
    List<String> cmd = new ArrayList<>();
    cmd.add(Launcher.root().resolve("bin/weightsync").toString());
    cmd.addAll(args);
    return Launcher.start(new ProcessBuilder(cmd).redirectErrorStream(true)
        .redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile())));
  }

  private Process startEngineSide(int i) throws Exception {
    Path log = tmp.resolve("engine-side-" + i + ".log");
    Process p = start(log, List.of("serve", "--role", "engine", "--port",
        String.valueOf(enginePorts[i]), "--metrics-port", "-1", "--staging-dir",
        tmp.resolve("engine-" + i).toString(), "--sglang-url", engines.get(i).url(),
        "--part-timeout", "8s", "--keep-versions", "5"));
    Launcher.awaitPort(enginePorts[i], p, log);
    return p;
  }

  /** Golden bf16 split into two folders: tensors alternately in part 0 and part 1. */
  private List<Path> splitGolden() throws IOException {
    List<Path> parts = List.of(tmp.resolve("part-0"), tmp.resolve("part-1"));
    try (CheckpointFolder in = CheckpointFolder.open(Launcher.golden("bf16"))) {
      List<List<TensorSpec>> specs = List.of(new ArrayList<>(), new ArrayList<>());
      List<TensorSpec> all = in.tensors().stream()
          .sorted(java.util.Comparator.comparing(TensorSpec::name)).toList();
      for (int i = 0; i < all.size(); i++) {
        specs.get(i % 2).add(all.get(i));
      }
      for (int p = 0; p < 2; p++) {
        Files.createDirectories(parts.get(p));
        try (CheckpointWriter w = new CheckpointWriter(parts.get(p), specs.get(p), 1L << 30)) {
          for (TensorSpec t : specs.get(p)) {
            w.write(t.name(), 0, in.source(t.name()).window(0, (int) t.byteLength()));
          }
          w.finish((ObjectNode) in.config(), false);
        }
      }
    }
    return parts;
  }

  /** Pushes both parts of {@code version} at once, each to its own trainer-side sidecar. */
  private List<CompletableFuture<UpdateWeightsResponse>> pushBoth(List<Path> parts, String version) {
    List<CompletableFuture<UpdateWeightsResponse>> out = new ArrayList<>();
    for (int p = 0; p < 2; p++) {
      int part = p;
      out.add(CompletableFuture.supplyAsync(() -> {
        try (WeightSyncClient c = WeightSyncClient.connect("127.0.0.1:" + trainerPorts[part])) {
          return c.pushFolder(parts.get(part), version, part, 2);
        } catch (IOException e) {
          throw new java.io.UncheckedIOException(e);
        }
      }));
    }
    return out;
  }

  @AfterEach
  void stop() throws Exception {
    for (Process p : trainerSide) {
      p.destroy();
    }
    for (Process p : engineSide) {
      if (p != null) {
        p.destroy();
      }
    }
    for (Process p : trainerSide) {
      p.waitFor(30, TimeUnit.SECONDS);
    }
    engines.forEach(StandInEngine::close);
  }

  @Test
  void twoSendersThreeEngineSidecarsRestartsAndASenderDyingMidPart() throws Exception {
    for (int i = 0; i < 3; i++) {
      engines.add(new StandInEngine(0, null).start());
      enginePorts[i] = freePort();
    }
    for (int i = 0; i < 3; i++) {
      engineSide[i] = startEngineSide(i);
    }
    for (int t = 0; t < 2; t++) {
      trainerPorts[t] = freePort();
      List<String> args = new ArrayList<>(List.of("serve", "--role", "trainer", "--port",
          String.valueOf(trainerPorts[t]), "--metrics-port", "-1", "--format", "fp8-block",
          "--device", "cpu", "--staging-dir", tmp.resolve("trainer-" + t).toString(),
          // the first relays its part as 3 sub-parts over 3 connections, the second as one
          "--relay-streams", t == 0 ? "3" : "1"));
      for (int port : enginePorts) {
        args.addAll(List.of("--relay-to", "127.0.0.1:" + port));
      }
      Path log = tmp.resolve("trainer-side-" + t + ".log");
      trainerSide.add(start(log, args));
      Launcher.awaitPort(trainerPorts[t], trainerSide.get(t), log);
    }
    List<Path> parts = splitGolden();

    // 1. Both parts arrive: every engine loads one folder, byte-identical to golden/fp8.
    for (CompletableFuture<UpdateWeightsResponse> f : pushBoth(parts, "1")) {
      UpdateWeightsResponse r = f.get(120, TimeUnit.SECONDS);
      assertThat(r.getEnginesList()).hasSize(3).allSatisfy(e -> {
        assertThat(e.getOutcome()).isEqualTo(EngineOutcome.LOADED);
        assertThat(e.getEnginesList()).singleElement()
            .satisfies(b -> assertThat(b.getOutcome()).isEqualTo(EngineOutcome.LOADED));
      });
    }
    for (int i = 0; i < 3; i++) {
      assertThat(engines.get(i).weightVersion()).isEqualTo("1");
      Launcher.Result cmp = Launcher.compare(Launcher.golden("fp8"), tmp.resolve("engine-" + i + "/1"));
      assertThat(cmp.exitCode()).as(cmp.stdout() + cmp.stderr()).isZero();
    }
    // Each engine-side sidecar gathered part 0 from three sub-parts and part 1 from one stream.
    try (var files = Files.list(tmp.resolve("engine-0/1"))) {
      assertThat(files.map(p -> p.getFileName().toString())
          .filter(n -> n.endsWith(".safetensors"))).containsExactlyInAnyOrder(
              "model-00001-of-00002.001.safetensors", "model-00001-of-00002.002.safetensors",
              "model-00001-of-00002.003.safetensors", "model-00002-of-00002.safetensors");
    }
    // The trainer side quantized its part once and relayed 1 byte per FP8 weight, not 2.
    assertThat(Files.list(tmp.resolve("trainer-0")).map(p -> p.getFileName().toString()))
        .contains("1.part-0");

    // 2. An engine-side sidecar restarts between versions; the next version reaches all three.
    engineSide[2].destroy();
    assertThat(engineSide[2].waitFor(60, TimeUnit.SECONDS)).isTrue();
    engineSide[2] = startEngineSide(2);
    for (CompletableFuture<UpdateWeightsResponse> f : pushBoth(parts, "2")) {
      assertThat(f.get(120, TimeUnit.SECONDS).getEnginesList())
          .allMatch(e -> e.getOutcome() == EngineOutcome.LOADED);
    }
    assertThat(engines).allMatch(e -> e.weightVersion().equals("2"));

    // 3. The sender of part 0 dies mid-part (its relay stream breaks after one chunk): every
    //    engine-side sidecar aborts version 3 at the part timeout, no engine is touched, and the
    //    other sender learns why.
    engines.forEach(StandInEngine::clearCalls);
    List<RawStream> dying = new ArrayList<>();
    List<CompletableFuture<io.grpc.Status>> cut = new ArrayList<>();
    for (int port : enginePorts) {
      RawStream raw = new RawStream(port);
      dying.add(raw);
      UpdateWeightsRequest header = UpdateWeightsRequest.newBuilder().setHeader(Header.newBuilder()
          .setWeightVersion("3").setPartIndex(0).setPartCount(2)
          .setPayload(Payload.PAYLOAD_QUANTIZED).setQuantizationConfigJson("{}")).build();
      UpdateWeightsRequest chunk = RawStream.chunk("model.embed_tokens.weight", "BF16",
          new long[] {1024, 64}, 0, new byte[4096]);
      cut.add(CompletableFuture.supplyAsync(() -> {
        try {
          return raw.send(List.of(header, chunk), false, true);
        } catch (Exception e) {
          throw new IllegalStateException(e);
        }
      }));
    }
    for (CompletableFuture<io.grpc.Status> c : cut) {
      assertThat(c.get(60, TimeUnit.SECONDS).getCode()).isEqualTo(io.grpc.Status.Code.CANCELLED);
    }
    dying.forEach(RawStream::close);
    try (WeightSyncClient c = WeightSyncClient.connect("127.0.0.1:" + trainerPorts[1])) {
      assertThatThrownBy(() -> c.pushFolder(parts.get(1), "3", 1, 2))
          .isInstanceOf(StatusRuntimeException.class)
          .hasMessageContaining("part(s) [0] of 2 did not arrive");
    }
    for (int i = 0; i < 3; i++) {
      assertThat(engines.get(i).weightVersion()).isEqualTo("2");
      assertThat(engines.get(i).routes()).as("engine " + i + " untouched").isEmpty();
      assertThat(Files.exists(tmp.resolve("engine-" + i + "/3"))).isFalse();
    }
  }
}
