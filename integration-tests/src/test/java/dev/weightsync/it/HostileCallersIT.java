package dev.weightsync.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.weightsync.client.Tensor;
import dev.weightsync.core.quant.Bf16;
import dev.weightsync.core.tensor.DType;
import dev.weightsync.core.tensor.FileRegionSource;
import dev.weightsync.core.tensor.TensorSource;
import dev.weightsync.core.tensor.TensorSpec;
import dev.weightsync.proto.v1.EngineOutcome;
import dev.weightsync.proto.v1.UpdateWeightsRequest;
import dev.weightsync.proto.v1.UpdateWeightsResponse;
import dev.weightsync.proto.v1.WeightSyncGrpc;
import io.grpc.ClientCall;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.netty.NettyChannelBuilder;
import io.grpc.stub.ClientCalls;
import io.grpc.stub.MetadataUtils;
import io.grpc.stub.StreamObserver;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Callers that hold slots without sending, and streams that race for the last bytes of a small
 * staging filesystem: one caller cannot keep another out, a full disk is refused with the numbers
 * before a byte is written, and dropped versions give their space back at once. The filesystem
 * cases mount a real tmpfs (root only; elsewhere StagingSpaceTest checks the ledger against a
 * fake filesystem).
 */
class HostileCallersIT {

  @TempDir Path tmp;
  private final List<Path> mounts = new ArrayList<>();

  @AfterEach
  void unmount() throws Exception {
    for (Path m : mounts) {
      new ProcessBuilder("umount", "-l", m.toString()).inheritIO().start().waitFor();
    }
  }

  /** 300 streams of one caller that send a header and stall, while another caller pushes. */
  @Test
  void stalledStreamsOfOneCallerDoNotKeepAnotherOut() throws Exception {
    try (SidecarHarness h = new SidecarHarness(tmp, Map.of());
        Stalled stalled = new Stalled(h.sidecar.port(), "stalled-trainer", 300)) {
      List<Status> refused = stalled.awaitEnded(300 - 64);
      assertThat(refused).allSatisfy(s -> {
        assertThat(s.getCode()).isEqualTo(Status.Code.RESOURCE_EXHAUSTED);
        assertThat(s.getDescription()).contains("stalled-trainer")
            .contains("max-streams-per-caller=64");
      });
      UpdateWeightsResponse r = h.client.pushFolder(Launcher.golden("bf16"), "other", 0, 1);
      assertThat(r.getEngines(0).getOutcome()).isEqualTo(EngineOutcome.LOADED);
      assertThat(h.stagedVersions()).containsExactly("other");
      assertThat(h.client.status().getInProgressCount())
          .as("the stalled caller's admitted streams, each a version waiting for data")
          .isEqualTo(64);
    }
  }

  /**
   * Chunks scattered on purpose (every other element of a tensor) are refused once the stream
   * holds 16384 separate ranges, before its heap grows with them; 20,000 one-byte chunks in
   * order are one range, and load.
   */
  @Test
  void scatteredChunksAreBoundedAndOneByteChunksInOrderLoad() throws Exception {
    try (SidecarHarness h = new SidecarHarness(tmp, Map.of());
        RawStream raw = new RawStream(h.sidecar.port())) {
      long[] shape = {32770};
      List<UpdateWeightsRequest> scattered = new ArrayList<>();
      scattered.add(RawStream.header("scattered", 0, 1));
      for (long off = 0; off < 2 * 32770; off += 4) {
        scattered.add(RawStream.chunk("model.norm.weight", "BF16", shape, off, new byte[2]));
      }
      Status s = raw.send(scattered, true, false);
      assertThat(s.getCode()).isEqualTo(Status.Code.RESOURCE_EXHAUSTED);
      assertThat(s.getDescription()).contains("16385 separate received ranges")
          .contains("send each tensor's chunks in order");

      List<UpdateWeightsRequest> bytes = new ArrayList<>();
      bytes.add(RawStream.header("bytewise", 0, 1));
      for (long off = 0; off < 20_000; off++) {
        bytes.add(RawStream.chunk("model.norm.weight", "BF16", new long[] {10_000}, off,
            new byte[1]));
      }
      bytes.add(RawStream.commit(1, 20_000));
      assertThat(raw.send(bytes, true, false).getCode()).isEqualTo(Status.Code.OK);
      assertThat(h.stagedVersions()).containsExactly("bytewise");
    }
  }

  /**
   * A stream's slot is free again by the time its caller hears the outcome: a caller limited to
   * one stream that sends again at once, after a success or a refusal, is never refused for it.
   */
  @Test
  void aCallerWhoSendsAgainAtOnceFindsTheSlotFree() throws Exception {
    try (SidecarHarness h = new SidecarHarness(tmp, Map.of("max-streams", 1));
        RawStream raw = new RawStream(h.sidecar.port())) {
      for (int i = 0; i < 15; i++) {
        assertThat(h.client.pushFolder(Launcher.golden("bf16"), "v" + i, 0, 1).getEngines(0)
            .getOutcome()).as("version " + i).isEqualTo(EngineOutcome.LOADED);
        Status refused = raw.send(List.of(RawStream.header("bad" + i, 0, 1),
            RawStream.commit(1, 1)), true, false);
        assertThat(refused.getCode()).as("refusal " + i).isEqualTo(Status.Code.INVALID_ARGUMENT);
      }
    }
  }

  /** A stream that sends only a header, or nothing, gives its slot back after header-timeout. */
  @Test
  void aStreamWithoutTensorDataIsEndedAfterTheHeaderTimeout() throws Exception {
    try (SidecarHarness h = new SidecarHarness(tmp, Map.of("header-timeout", "1s",
        "max-streams", 1, "part-timeout", "60s"));
        RawStream raw = new RawStream(h.sidecar.port())) {
      Status s = raw.send(List.of(RawStream.header("idle", 0, 1)), false, false);
      assertThat(s.getCode()).isEqualTo(Status.Code.DEADLINE_EXCEEDED);
      assertThat(s.getDescription()).contains("sent only its header for 1 s (header-timeout)");
      s = raw.send(List.of(), false, false);
      assertThat(s.getCode()).isEqualTo(Status.Code.DEADLINE_EXCEEDED);
      assertThat(s.getDescription()).contains("sent nothing for 1 s (header-timeout)");
      assertThat(h.client.pushFolder(Launcher.golden("bf16"), "after", 0, 1).getEngines(0)
          .getOutcome()).as("the only slot came back").isEqualTo(EngineOutcome.LOADED);
    }
  }

  /**
   * Six streams at once on a 20 MiB staging filesystem, each with an 8 MiB tensor: every check
   * alone would see room, together they do not fit. The ledger refuses the ones that do not fit
   * with RESOURCE_EXHAUSTED naming the numbers, never INTERNAL "No space left on device", and
   * the space comes back once the version is given up.
   */
  @Test
  void concurrentStreamsOnAFullStagingFilesystemAreRefusedWithTheNumbers() throws Exception {
    Path fs = tmpfs("full", "20m");
    try (SidecarHarness h = new SidecarHarness(tmp, Map.of("staging-dir", fs.resolve("staging")
        .toString(), "format", "bf16", "staging-reserve", "0", "part-timeout", "2s"))) {
      List<Tensor> tensors = new ArrayList<>();
      for (int i = 0; i < 6; i++) {
        tensors.add(bf16("model.layers." + i + ".mlp.up_proj.weight", 2048, 2048, i));
      }
      assertThatThrownBy(() -> h.client.pushParallel("toolarge", tensors, 6))
          .isInstanceOf(StatusRuntimeException.class)
          .satisfies(e -> {
            Status s = ((StatusRuntimeException) e).getStatus();
            assertThat(s.getCode()).isEqualTo(Status.Code.RESOURCE_EXHAUSTED);
            // whichever reservation found no room: a tensor's 8 MiB, or a late stream's header
            assertThat(s.getDescription()).contains("bytes free").contains("reserved by parts")
                .containsPattern("needs (8388608|262144)");
          });
      // the parts that did fit wait for a retry of the others until the part timeout (2 s)
      awaitUsedBelow(fs, 1 << 20, 5);
      assertThat(h.engine.routes()).isEmpty();
      assertThat(h.client.pushParallel("fits", tensors.subList(0, 2), 2).getEngines(0)
          .getOutcome()).isEqualTo(EngineOutcome.LOADED);
    }
  }

  /**
   * staging-reuse on a 20 MiB filesystem: after two 8 MiB versions the files of the pruned one
   * are kept, leaving too little for a version whose shards have other names. The kept files are
   * freed for it instead of the version being refused.
   */
  @Test
  void filesKeptForReuseAreFreedForAVersionThatWouldNotFitOtherwise() throws Exception {
    Path fs = tmpfs("reuse", "20m");
    try (SidecarHarness h = new SidecarHarness(tmp, Map.of("staging-dir", fs.resolve("staging")
        .toString(), "format", "bf16", "staging-reserve", "0", "keep-versions", 1,
        "staging-reuse", true))) {
      for (String v : List.of("1", "2")) {
        assertThat(h.client.push(v, 0, 1, List.of(bf16("model.layers.0.mlp.up_proj.weight",
            2048, 2048, 1))).getEngines(0).getOutcome()).isEqualTo(EngineOutcome.LOADED);
      }
      Path kept = fs.resolve("staging/.reusable/model-00001-of-00001.safetensors");
      assertThat(Files.size(kept)).as("version 1's shard, kept").isGreaterThan(8L << 20);
      List<Tensor> halves = List.of(bf16("model.layers.0.mlp.up_proj.weight", 1024, 2048, 2),
          bf16("model.layers.0.mlp.down_proj.weight", 1024, 2048, 3));
      assertThat(h.client.pushParallel("3", halves, 2).getEngines(0).getOutcome())
          .isEqualTo(EngineOutcome.LOADED); // two parts: model-0000{1,2}-of-00002
      try (var list = Files.list(fs.resolve("staging"))) {
        assertThat(list.map(p -> p.getFileName().toString())).containsExactlyInAnyOrder("3",
            ".reusable");
      }
      assertThat(Files.size(kept)).as("now version 2's").isGreaterThan(8L << 20);
    }
  }

  /** The reserve alone refusing is said as such. */
  @Test
  void whenTheReserveIsWhatRefusesTheMessageSaysSo() throws Exception {
    Path fs = tmpfs("reserve", "16m");
    try (SidecarHarness h = new SidecarHarness(tmp, Map.of("staging-dir", fs.resolve("staging")
        .toString(), "format", "bf16", "staging-reserve", "12MiB"))) {
      Tensor t = bf16("model.layers.0.mlp.up_proj.weight", 1024, 4096, 1); // 8 MiB
      assertThatThrownBy(() -> h.client.pushParallel("reserved", List.of(t), 1))
          .isInstanceOf(StatusRuntimeException.class)
          .hasMessageContaining("RESOURCE_EXHAUSTED")
          .hasMessageContaining("the reserve is what refused");
    }
  }

  /**
   * Versions pushed one after another with keep-versions 1, and a part cancelled half-way in
   * between: after each, the tmpfs's used space is one version again and nothing is still
   * mapped, without the collector being asked to run.
   */
  @Test
  void droppedVersionsGiveTheirSpaceBackAtOnce() throws Exception {
    Path fs = tmpfs("soak", "96m");
    try (SidecarHarness h = new SidecarHarness(tmp, Map.of("staging-dir", fs.resolve("staging")
        .toString(), "format", "fp8-block", "keep-versions", 1))) {
      List<Tensor> tensors = List.of(bf16("model.layers.0.mlp.up_proj.weight", 2048, 2048, 3),
          bf16("model.layers.0.mlp.down_proj.weight", 2048, 2048, 4));
      long version = 8L << 20; // 2 x 2048 x 2048 FP8 bytes, and their scales below 1 MiB
      for (int i = 0; i < 12; i++) {
        assertThat(h.client.pushParallel("v" + i, tensors, 2).getEngines(0).getOutcome())
            .isEqualTo(EngineOutcome.LOADED);
        awaitUsedBelow(fs, version + (1 << 20), 1); // within a second of being dropped
        assertThat(FileRegionSource.mappedBytes()).as("mapped after version " + i).isZero();
        if (i % 4 == 1) {
          try (RawStream raw = new RawStream(h.sidecar.port())) {
            byte[] half = new byte[1 << 20];
            raw.send(List.of(RawStream.header("cancelled" + i, 0, 1),
                RawStream.chunk("model.layers.0.mlp.up_proj.weight", "BF16",
                    new long[] {2048, 2048}, 0, half)), false, true);
          }
          awaitUsedBelow(fs, version + (1 << 20), 1);
        }
      }
      try (var list = Files.list(fs.resolve("staging"))) {
        assertThat(list.map(p -> p.getFileName().toString()).filter(n -> !n.startsWith(".")))
            .containsExactly("v11");
      }
    }
  }

  private Path tmpfs(String name, String size) throws Exception {
    Path dir = Files.createDirectories(tmp.resolve(name));
    Process p = new ProcessBuilder("mount", "-t", "tmpfs", "-o", "size=" + size, "tmpfs",
        dir.toString()).redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes());
    Assumptions.assumeTrue(p.waitFor() == 0, "mounting a tmpfs needs root (" + out.trim()
        + "); StagingSpaceTest covers the ledger with a fake filesystem");
    mounts.add(dir);
    return dir;
  }

  /** Waits (up to {@code seconds}) for the filesystem's used bytes to drop below {@code bytes}. */
  private static void awaitUsedBelow(Path fs, long bytes, int seconds) throws Exception {
    long used = 0;
    for (long deadline = System.nanoTime() + seconds * 1_000_000_000L;
        System.nanoTime() < deadline; ) {
      var store = Files.getFileStore(fs);
      used = store.getTotalSpace() - store.getUsableSpace();
      if (used < bytes) {
        return;
      }
      Thread.sleep(20);
    }
    String files;
    try (var w = Files.walk(fs)) {
      files = w.map(p -> p + " " + p.toFile().length()).toList().toString();
    }
    String maps = Files.readAllLines(Path.of("/proc/self/maps")).stream()
        .filter(l -> l.contains(fs.toString())).toList().toString();
    throw new AssertionError(fs + " still uses " + used + " bytes, expected below " + bytes
        + "; files " + files + "; mapped " + maps);
  }

  private static Tensor bf16(String name, int rows, int cols, int seed) {
    ByteBuffer b = ByteBuffer.allocate(rows * cols * 2).order(ByteOrder.LITTLE_ENDIAN);
    for (int i = 0; b.hasRemaining(); i++) {
      b.putShort(Bf16.fromFloat(((i * 7919 + seed) % 251 - 125) * 1e-3f));
    }
    return new Tensor(TensorSpec.of(name, DType.BF16, rows, cols), TensorSource.of(b.flip()));
  }

  /** Streams of one declared caller that each send a header and then nothing. */
  private static final class Stalled implements AutoCloseable {
    private final ManagedChannel channel;
    private final List<RawStream.Replies<UpdateWeightsResponse>> replies = new ArrayList<>();
    private final List<ClientCall<UpdateWeightsRequest, UpdateWeightsResponse>> calls =
        new ArrayList<>();

    Stalled(int port, String caller, int streams) {
      Metadata m = new Metadata();
      m.put(Metadata.Key.of("weightsync-caller", Metadata.ASCII_STRING_MARSHALLER), caller);
      channel = NettyChannelBuilder.forAddress("127.0.0.1", port).usePlaintext()
          .intercept(MetadataUtils.newAttachHeadersInterceptor(m)).build();
      for (int i = 0; i < streams; i++) {
        var call = channel.newCall(WeightSyncGrpc.getUpdateWeightsMethod(),
            io.grpc.CallOptions.DEFAULT);
        RawStream.Replies<UpdateWeightsResponse> r = new RawStream.Replies<>();
        StreamObserver<UpdateWeightsRequest> out = ClientCalls.asyncClientStreamingCall(call, r);
        out.onNext(RawStream.header("stall" + i, 0, 1));
        calls.add(call);
        replies.add(r);
      }
    }

    /** Waits (up to 30 s) until {@code n} of the streams have ended; returns how. */
    List<Status> awaitEnded(int n) throws Exception {
      for (long deadline = System.nanoTime() + 30_000_000_000L; System.nanoTime() < deadline; ) {
        List<Status> ended = replies.stream().filter(r -> r.done.isDone())
            .map(r -> r.done.join()).toList();
        if (ended.size() >= n) {
          return ended;
        }
        Thread.sleep(20);
      }
      throw new AssertionError("fewer than " + n + " of the stalled streams were answered");
    }

    @Override
    public void close() {
      calls.forEach(c -> c.cancel("test over", null));
      channel.shutdownNow();
    }
  }
}
