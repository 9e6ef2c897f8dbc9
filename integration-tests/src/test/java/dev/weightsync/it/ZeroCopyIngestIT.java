package dev.weightsync.it;

import static org.assertj.core.api.Assertions.assertThat;

import dev.weightsync.client.Tensor;
import dev.weightsync.client.WeightSyncClient;
import dev.weightsync.core.checkpoint.CheckpointFolder;
import dev.weightsync.core.quant.Bf16;
import dev.weightsync.core.tensor.DType;
import dev.weightsync.core.tensor.TensorSpec;
import dev.weightsync.proto.v1.UpdateWeightsRequest;
import dev.weightsync.proto.v1.WeightSyncGrpc;
import io.grpc.CallOptions;
import io.grpc.ManagedChannel;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.netty.NettyChannelBuilder;
import io.grpc.stub.ClientCalls;
import java.io.ByteArrayInputStream;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The sidecar parses chunks over Netty's own buffers (no copy) and writes pass-through tensors
 * straight into the staged shard: the same bytes and the same refusals as before, at any chunk
 * cut, and every buffer given back. Netty's leak detector runs at its paranoid level throughout,
 * and each test ends by asserting it reported nothing.
 */
class ZeroCopyIngestIT {

  @TempDir Path tmp;
  private NettyLeaks leaks;

  @BeforeEach
  void watchLeaks() {
    leaks = new NettyLeaks();
  }

  @AfterEach
  void noBufferLeaked() throws Exception {
    try {
      assertThat(leaks.reported()).as("Netty buffers never released").isEmpty();
    } finally {
      leaks.close();
    }
  }

  @Test
  void passThroughAndQuantizedBytesAreExactAtAnyChunkSize() throws Exception {
    for (String format : List.of("bf16", "fp8-block")) {
      try (SidecarHarness h = new SidecarHarness(tmp.resolve(format), Map.of("format", format))) {
        // 4093 bytes: every chunk but the first starts inside an element
        for (int chunk : new int[] {4093, 64 << 10, 4 << 20}) {
          try (WeightSyncClient c = WeightSyncClient.connect("127.0.0.1:" + h.sidecar.port(),
              null, 1, null, chunk)) {
            String version = format + "-" + chunk;
            c.pushFolder(Launcher.golden("bf16"), version, 0, 1);
            Launcher.Result cmp = Launcher.compare(
                Launcher.golden(format.equals("bf16") ? "bf16" : "fp8"), h.staging.resolve(version));
            assertThat(cmp.exitCode()).as(version + ": " + cmp.stdout()).isZero();
          }
        }
      }
    }
  }

  @Test
  void aNanIsFoundAtItsIndexWhereverTheChunksCutIt() throws Exception {
    TensorSpec spec = TensorSpec.of("model.norm.weight", DType.BF16, 50_000);
    ByteBuffer data = ByteBuffer.allocate((int) spec.byteLength()).order(ByteOrder.LITTLE_ENDIAN);
    for (int i = 0; i < 50_000; i++) {
      data.putShort(Bf16.fromFloat(i == 31_337 ? Float.NaN : 0.5f));
    }
    try (SidecarHarness h = new SidecarHarness(tmp, Map.of("format", "bf16"))) {
      for (int chunk : new int[] {4093, 8192}) { // cut inside elements, and on them
        try (WeightSyncClient c = WeightSyncClient.connect("127.0.0.1:" + h.sidecar.port(),
            null, 1, null, chunk)) {
          List<Tensor> tensors = List.of(Tensor.of(spec, data.duplicate().flip()));
          StatusRuntimeException e = org.junit.jupiter.api.Assertions.assertThrows(
              StatusRuntimeException.class, () -> c.push("nan-" + chunk, 0, 1, tensors));
          assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.INVALID_ARGUMENT);
          assertThat(e.getStatus().getDescription()).as("chunk " + chunk)
              .contains("model.norm.weight").contains("at element 31337");
        }
      }
      assertThat(h.stagingEntries()).as("nothing staged").allMatch(n -> !n.startsWith("nan"));
      assertThat(h.engine.routes()).doesNotContain("/update_weights_from_disk");
    }
  }

  @Test
  void bytesThatAreNoMessageAreRefusedAsInvalid() throws Exception {
    MethodDescriptor<byte[], byte[]> raw = WeightSyncGrpc.getUpdateWeightsMethod()
        .toBuilder(new Bytes(), new Bytes()).build();
    byte[] garbage = new byte[100_000];
    new SplittableRandom(3).nextBytes(garbage);
    try (SidecarHarness h = new SidecarHarness(tmp, Map.of("format", "bf16"))) {
      ManagedChannel ch = NettyChannelBuilder.forAddress("127.0.0.1", h.sidecar.port())
          .usePlaintext().build();
      try {
        RawStream.Replies<byte[]> replies = new RawStream.Replies<>();
        io.grpc.stub.StreamObserver<byte[]> out = ClientCalls.asyncClientStreamingCall(
            ch.newCall(raw, CallOptions.DEFAULT), replies);
        out.onNext(RawStream.header("garbage", 0, 1).toByteArray());
        out.onNext(garbage);
        out.onCompleted();
        Status s = replies.await().status();
        assertThat(s.getCode()).as(s.toString()).isEqualTo(Status.Code.INVALID_ARGUMENT);
        assertThat(s.getDescription()).contains("not an UpdateWeightsRequest");
      } finally {
        ch.shutdownNow();
      }
      assertThat(h.stagingEntries()).allMatch(n -> !n.startsWith("."));
      var ok = h.client.pushFolder(Launcher.golden("bf16"), "after-garbage", 0, 1);
      assertThat(ok.getEngines(0).getOutcome().name()).isEqualTo("LOADED");
    }
  }

  @Test
  void fuzzedAndCancelledStreamsGiveEveryBufferBack() throws Exception {
    SplittableRandom r = new SplittableRandom(20261202);
    try (SidecarHarness h = new SidecarHarness(tmp, Map.of("format", "fp8-block",
        "part-timeout", "1s")); RawStream raw = new RawStream(h.sidecar.port())) {
      for (int i = 0; i < 300; i++) {
        List<UpdateWeightsRequest> msgs = FuzzIT.stream(r, i);
        Status s = raw.send(msgs, true, i % 25 == 0);
        assertThat(s.getCode()).as("stream %d: %s", i, s)
            .isNotIn(Status.Code.UNKNOWN, Status.Code.INTERNAL);
      }
      try (CheckpointFolder golden = CheckpointFolder.open(Launcher.golden("bf16"))) {
        List<Tensor> tensors = new ArrayList<>();
        for (TensorSpec t : golden.tensors()) {
          tensors.add(new Tensor(t, golden.source(t.name())));
        }
        var ok = h.client.pushParallel("after-fuzz", tensors, 3);
        assertThat(ok.getEngines(0).getOutcome().name()).isEqualTo("LOADED");
      }
    }
  }

  /** A byte[] marshaller: what a hostile or broken client may put on the wire. */
  private static final class Bytes implements MethodDescriptor.Marshaller<byte[]> {
    @Override
    public InputStream stream(byte[] value) {
      return new ByteArrayInputStream(value);
    }

    @Override
    public byte[] parse(InputStream stream) {
      try {
        return stream.readAllBytes();
      } catch (java.io.IOException e) {
        throw new java.io.UncheckedIOException(e);
      }
    }
  }
}
