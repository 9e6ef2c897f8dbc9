package dev.weightsync.server.ingest;

import static org.assertj.core.api.Assertions.assertThat;

import com.google.protobuf.ByteString;
import dev.weightsync.proto.v1.TensorChunk;
import dev.weightsync.proto.v1.UpdateWeightsRequest;
import io.grpc.Status;
import java.io.ByteArrayInputStream;
import org.junit.jupiter.api.Test;

/**
 * The marshaller's copying path (a stream that is not the Netty transport's): the same message,
 * and a refusal, not an exception, for bytes that are no message. The zero-copy path over real
 * Netty buffers is ZeroCopyIngestIT's.
 */
class ZeroCopyRequestsTest {

  @Test
  void aPlainStreamParsesToTheSameMessage() {
    UpdateWeightsRequest sent = UpdateWeightsRequest.newBuilder().setChunk(TensorChunk.newBuilder()
        .setName("w").setDtype("BF16").addShape(3).setOffset(2)
        .setData(ByteString.copyFrom(new byte[] {1, 2, 3, 4, 5, 6})).setCrc32C(77)).build();
    ZeroCopyRequests.Received r = new ZeroCopyRequests()
        .parse(new ByteArrayInputStream(sent.toByteArray()));
    assertThat(r.refused()).isNull();
    assertThat(r.request()).isEqualTo(sent);
    r.release();
    r.release(); // idempotent
  }

  @Test
  void bytesThatAreNoMessageAreRefusedWithInvalidArgument() {
    ZeroCopyRequests.Received r = new ZeroCopyRequests()
        .parse(new ByteArrayInputStream(new byte[] {(byte) 0xFF, (byte) 0xFF, (byte) 0xFF, 1}));
    assertThat(r.request()).isNull();
    assertThat(r.refused().getCode()).isEqualTo(Status.Code.INVALID_ARGUMENT);
    assertThat(r.refused().getDescription()).startsWith("a message that is not an UpdateWeightsRequest");
  }
}
