package dev.weightsync.client;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.weightsync.core.tensor.DType;
import dev.weightsync.core.tensor.TensorSpec;
import dev.weightsync.proto.v1.Header;
import dev.weightsync.proto.v1.UpdateWeightsRequest;
import dev.weightsync.proto.v1.UpdateWeightsResponse;
import dev.weightsync.proto.v1.WeightSyncGrpc;
import io.grpc.Context;
import io.grpc.Grpc;
import io.grpc.Metadata;
import io.grpc.Server;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.ServerInterceptors;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.netty.NettyServerBuilder;
import io.grpc.stub.ServerCallStreamObserver;
import io.grpc.stub.StreamObserver;
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * {@link WeightSyncClient#pushSplit} over real sockets into a recording server: one part's
 * tensors go out once each, as sub-parts on connections of their own, and the failure of one
 * sub-part is the error the caller gets while the others are cancelled.
 */
class PushSplitTest {

  private static final Context.Key<SocketAddress> PEER = Context.key("peer");

  /** What the server saw of one stream. */
  record Seen(Header header, SocketAddress peer, List<String> tensors) {}

  private final List<Seen> seen = new CopyOnWriteArrayList<>();
  /**
   * Counted down by each cancelled stream but the refused one. Not by sub-part index: under load
   * the client can cancel a stream before the server has read its header.
   */
  private final CountDownLatch othersCancelled = new CountDownLatch(2);
  private volatile int refuseSubPart = -1;
  private Server server;
  private WeightSyncClient client;

  private final class Recording extends WeightSyncGrpc.WeightSyncImplBase {
    @Override
    public StreamObserver<UpdateWeightsRequest> updateWeights(
        StreamObserver<UpdateWeightsResponse> out) {
      SocketAddress peer = PEER.get();
      ServerCallStreamObserver<UpdateWeightsResponse> call =
          (ServerCallStreamObserver<UpdateWeightsResponse>) out;
      int[] sub = {-1}; // set by the header; the handler must be set before the first message
      call.setOnCancelHandler(() -> {
        if (sub[0] != refuseSubPart) {
          othersCancelled.countDown();
        }
      });
      return new StreamObserver<>() {
        Header header;
        final List<String> names = new ArrayList<>();

        @Override
        public void onNext(UpdateWeightsRequest r) {
          if (r.hasHeader()) {
            header = r.getHeader();
            sub[0] = header.getSubPartIndex();
            if (header.getSubPartIndex() == refuseSubPart) {
              out.onError(Status.INVALID_ARGUMENT.withDescription("sub-part refused on purpose")
                  .asRuntimeException());
            }
          } else if (r.hasChunk() && !names.contains(r.getChunk().getName())) {
            names.add(r.getChunk().getName());
          }
        }

        @Override
        public void onError(Throwable t) {
        }

        @Override
        public void onCompleted() {
          seen.add(new Seen(header, peer, List.copyOf(names)));
          if (refuseSubPart >= 0) {
            return; // as a sidecar does: no answer until the version is complete
          }
          out.onNext(UpdateWeightsResponse.newBuilder().setWeightVersion(
              header.getWeightVersion()).build());
          out.onCompleted();
        }
      };
    }
  }

  private void start() throws Exception {
    ServerInterceptor peers = new ServerInterceptor() {
      @Override
      public <Q, A> ServerCall.Listener<Q> interceptCall(ServerCall<Q, A> call, Metadata headers,
          ServerCallHandler<Q, A> next) {
        Context c = Context.current().withValue(PEER,
            call.getAttributes().get(Grpc.TRANSPORT_ATTR_REMOTE_ADDR));
        return io.grpc.Contexts.interceptCall(c, call, headers, next);
      }
    };
    server = NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", 0))
        .addService(ServerInterceptors.intercept(new Recording(), peers)).build().start();
    client = WeightSyncClient.connect("127.0.0.1:" + server.getPort(), null, 1, null, 64 * 1024);
  }

  @AfterEach
  void stop() throws Exception {
    if (client != null) {
      client.close();
    }
    if (server != null) {
      server.shutdownNow().awaitTermination(10, TimeUnit.SECONDS);
    }
  }

  private static List<Tensor> tensors(int n) {
    List<Tensor> out = new ArrayList<>();
    for (int i = 0; i < n; i++) {
      TensorSpec spec = TensorSpec.of("t" + i, DType.BF16, 256 + 64 * i, 128);
      out.add(Tensor.of(spec, ByteBuffer.allocate((int) spec.byteLength())));
    }
    return out;
  }

  private static Header part(int index, int count) {
    return Header.newBuilder().setWeightVersion("7").setPartIndex(index).setPartCount(count)
        .build();
  }

  @Test
  void aPartGoesOutAsSubPartsOnConnectionsOfTheirOwnEachTensorOnce() throws Exception {
    start();
    client.pushSplit(part(1, 2), tensors(7), 3);

    assertThat(seen).hasSize(3);
    assertThat(seen).allSatisfy(s -> {
      assertThat(s.header().getPartIndex()).isEqualTo(1);
      assertThat(s.header().getPartCount()).isEqualTo(2);
      assertThat(s.header().getSubPartCount()).isEqualTo(3);
    });
    assertThat(seen.stream().map(s -> s.header().getSubPartIndex()))
        .containsExactlyInAnyOrder(0, 1, 2);
    assertThat(seen.stream().map(Seen::peer).distinct()).as("one connection per sub-part")
        .hasSize(3);
    assertThat(seen.stream().flatMap(s -> s.tensors().stream()))
        .containsExactlyInAnyOrder("t0", "t1", "t2", "t3", "t4", "t5", "t6");
  }

  @Test
  void fewerTensorsThanStreamsSendFewerSubPartsAndOneIsAPlainPart() throws Exception {
    start();
    client.pushSplit(part(0, 1), tensors(2), 4);
    assertThat(seen).hasSize(2).allMatch(s -> s.header().getSubPartCount() == 2);

    seen.clear();
    client.pushSplit(part(0, 1), tensors(1), 4);
    assertThat(seen).singleElement().satisfies(s -> {
      assertThat(s.header().getSubPartCount()).as("not split: the field stays unset").isZero();
      assertThat(s.tensors()).containsExactly("t0");
    });
  }

  @Test
  void aRefusedSubPartIsTheErrorAndTheOtherSubPartsAreCancelled() throws Exception {
    start();
    refuseSubPart = 1;
    assertThatThrownBy(() -> client.pushSplit(part(0, 1), tensors(30), 3))
        .isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
          assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.INVALID_ARGUMENT);
          assertThat(e.getStatus().getDescription()).isEqualTo("sub-part refused on purpose");
        });
    assertThat(othersCancelled.await(10, TimeUnit.SECONDS)).as("sub-parts 0 and 2 cancelled")
        .isTrue();
  }
}
