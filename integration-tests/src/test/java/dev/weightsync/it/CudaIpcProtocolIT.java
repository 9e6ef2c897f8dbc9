package dev.weightsync.it;

import static org.assertj.core.api.Assertions.assertThat;

import com.google.protobuf.ByteString;
import dev.weightsync.core.checkpoint.CheckpointFolder;
import dev.weightsync.core.tensor.TensorSpec;
import dev.weightsync.proto.v1.CudaBucket;
import dev.weightsync.proto.v1.CudaTensor;
import dev.weightsync.proto.v1.UpdateWeightsCudaReply;
import dev.weightsync.proto.v1.UpdateWeightsRequest;
import io.grpc.Status;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The CUDA IPC protocol where no GPU is (CI): malformed buckets are refused as malformed, a
 * well-formed one is refused with FAILED_PRECONDITION and the advice to send bytes, and the
 * per-bucket RPC carries a byte push like UpdateWeights. Reading buckets on a GPU is tested on the
 * GPU machine (tools/gpu/cuda_ipc_check.py).
 */
class CudaIpcProtocolIT {

  @TempDir Path tmp;

  private static final String UUID = "GPU-12345678-9abc-def0-1234-56789abcdef0";

  private static UpdateWeightsRequest bucket(int index, int handleBytes, long length,
      CudaTensor... tensors) {
    return UpdateWeightsRequest.newBuilder().setCudaBucket(CudaBucket.newBuilder()
        .setIndex(index).setIpcHandle(ByteString.copyFrom(new byte[handleBytes]))
        .setByteLength(length).setGpuUuid(UUID).addAllTensors(List.of(tensors))).build();
  }

  private static CudaTensor tensor(String name, long offset, long... shape) {
    CudaTensor.Builder t = CudaTensor.newBuilder().setName(name).setDtype("BF16").setOffset(offset);
    for (long d : shape) {
      t.addShape(d);
    }
    return t.build();
  }

  private static RawStream.Outcome<UpdateWeightsCudaReply> sendCuda(int port,
      List<UpdateWeightsRequest> messages) throws Exception {
    try (RawStream raw = new RawStream(port)) {
      return raw.sendCuda(messages);
    }
  }

  private static List<UpdateWeightsRequest> withHeader(String version, UpdateWeightsRequest... m) {
    List<UpdateWeightsRequest> all = new ArrayList<>(List.of(RawStream.header(version, 0, 1)));
    all.addAll(List.of(m));
    return all;
  }

  @Test
  void malformedBucketsAreRefusedAsMalformed() throws Exception {
    try (SidecarHarness h = new SidecarHarness(tmp, Map.of("format", "fp8-block"))) {
      int port = h.sidecar.port();
      String w = "model.layers.0.mlp.up_proj.weight";
      Object[][] cases = {
          {withHeader("m1", bucket(0, 10, 1 << 20, tensor(w, 0, 256, 256))),
              "ipc_handle has 10 bytes"},
          {withHeader("m2", bucket(0, 64, 1000, tensor(w, 0, 256, 256))), "lies outside"},
          {withHeader("m3", bucket(0, 64, 1 << 20, tensor(w, 0, 256, 256),
              tensor("model.layers.0.mlp.down_proj.weight", 4096, 256, 256))), "overlaps"},
          {withHeader("m4", bucket(1, 64, 1 << 20, tensor(w, 0, 256, 256))), "bucket 0 was due"},
          {withHeader("m5", bucket(0, 64, 1 << 20)), "holds no tensors"},
          {List.of(bucket(0, 64, 1 << 20, tensor(w, 0, 256, 256))), "before the header"},
          {withHeader("m6", bucket(0, 64, 1 << 20, tensor(w, 0, 256, 256),
              tensor(w, 1 << 17, 256, 256))), "sent twice"},
      };
      for (Object[] c : cases) {
        @SuppressWarnings("unchecked")
        List<UpdateWeightsRequest> messages = (List<UpdateWeightsRequest>) c[0];
        var o = sendCuda(port, messages);
        assertThat(o.status().getCode()).as(String.valueOf(c[1]))
            .isEqualTo(Status.Code.INVALID_ARGUMENT);
        assertThat(o.status().getDescription()).contains((String) c[1]);
        assertThat(o.replies()).isEmpty();
      }
      // the same refusal on the plain RPC, where a bucket is acknowledged by the final response
      try (RawStream raw = new RawStream(port)) {
        Status s = raw.send(withHeader("m7", bucket(0, 10, 1 << 20, tensor(w, 0, 256, 256))),
            true, false);
        assertThat(s.getCode()).isEqualTo(Status.Code.INVALID_ARGUMENT);
        assertThat(s.getDescription()).contains("ipc_handle has 10 bytes");
      }
      assertThat(h.stagedVersions()).isEmpty();
      assertThat(h.engine.routes()).isEmpty();
    }
  }

  @Test
  void aSidecarWithoutTheGpuRefusesBucketsAndTakesBytes() throws Exception {
    try (SidecarHarness h = new SidecarHarness(tmp, Map.of("format", "fp8-block", "device", "cpu"));
        CheckpointFolder golden = CheckpointFolder.open(Launcher.golden("bf16"))) {
      var o = sendCuda(h.sidecar.port(), withHeader("c1", bucket(0, 64, 1 << 20,
          tensor("model.layers.0.mlp.up_proj.weight", 0, 256, 256))));
      assertThat(o.status().getCode()).isEqualTo(Status.Code.FAILED_PRECONDITION);
      assertThat(o.status().getDescription())
          .contains("cannot read GPU memory by CUDA IPC handle", "send the weights as bytes");

      // UpdateWeightsCuda with chunks only: the version's result arrives as the last reply
      List<UpdateWeightsRequest> messages = new ArrayList<>(List.of(RawStream.header("c2", 0, 1)));
      long bytes = 0;
      for (TensorSpec t : golden.tensors()) {
        ByteBuffer b = golden.source(t.name()).window(0, (int) t.byteLength());
        byte[] data = new byte[b.remaining()];
        b.get(data);
        long[] shape = t.shape();
        messages.add(RawStream.chunk(t.name(), t.dtype().name(), shape, 0, data));
        bytes += data.length;
      }
      messages.add(RawStream.commit(golden.tensors().size(), bytes));
      var ok = sendCuda(h.sidecar.port(), messages);
      assertThat(ok.status().isOk()).as(ok.status().toString()).isTrue();
      assertThat(ok.replies()).singleElement().satisfies(r -> {
        assertThat(r.hasResult()).isTrue();
        assertThat(r.getResult().getWeightVersion()).isEqualTo("c2");
      });
      assertThat(Launcher.compare(Launcher.golden("fp8"), h.staging.resolve("c2")).exitCode())
          .isZero();
    }
  }
}
