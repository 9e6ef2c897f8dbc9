package dev.weightsync.it;

import com.google.protobuf.ByteString;
import dev.weightsync.client.WireLimits;
import dev.weightsync.proto.v1.Commit;
import dev.weightsync.proto.v1.Format;
import dev.weightsync.proto.v1.Header;
import dev.weightsync.proto.v1.TensorChunk;
import dev.weightsync.proto.v1.UpdateWeightsCudaReply;
import dev.weightsync.proto.v1.UpdateWeightsRequest;
import dev.weightsync.proto.v1.UpdateWeightsResponse;
import dev.weightsync.proto.v1.WeightSyncGrpc;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.netty.NettyChannelBuilder;
import io.grpc.stub.StreamObserver;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.zip.CRC32C;

/** Sends hand-made message sequences, malformed ones included, and reports the final status. */
final class RawStream implements AutoCloseable {
  private final ManagedChannel channel;

  RawStream(int port) {
    this(NettyChannelBuilder.forAddress("127.0.0.1", port).usePlaintext()
        .maxInboundMessageSize(WireLimits.MAX_MESSAGE_BYTES).build());
  }

  /** Over {@code channel}, which this stream closes. */
  RawStream(ManagedChannel channel) {
    this.channel = channel;
  }

  static UpdateWeightsRequest header(String version, int part, int parts) {
    return UpdateWeightsRequest.newBuilder().setHeader(Header.newBuilder()
        .setWeightVersion(version).setPartIndex(part).setPartCount(parts)).build();
  }

  static UpdateWeightsRequest header(String version, Format format) {
    return UpdateWeightsRequest.newBuilder().setHeader(Header.newBuilder()
        .setWeightVersion(version).setFormat(format)).build();
  }

  static UpdateWeightsRequest chunk(String name, String dtype, long[] shape, long offset, byte[] data) {
    CRC32C crc = new CRC32C();
    crc.update(data);
    return chunkWithCrc(name, dtype, shape, offset, data, (int) crc.getValue());
  }

  static UpdateWeightsRequest chunkWithCrc(String name, String dtype, long[] shape, long offset,
      byte[] data, int crc) {
    TensorChunk.Builder c = TensorChunk.newBuilder().setName(name).setDtype(dtype)
        .setOffset(offset).setData(ByteString.copyFrom(data)).setCrc32C(crc);
    for (long d : shape) {
      c.addShape(d);
    }
    return UpdateWeightsRequest.newBuilder().setChunk(c).build();
  }

  static UpdateWeightsRequest commit(long tensors, long bytes) {
    return UpdateWeightsRequest.newBuilder()
        .setCommit(Commit.newBuilder().setTensorCount(tensors).setTotalBytes(bytes)).build();
  }

  /** The replies a stream got (oldest first) and how it ended. */
  record Outcome<T>(List<T> replies, Status status) {}

  /** Collects replies and the final status of a call. */
  static final class Replies<T> implements StreamObserver<T> {
    final List<T> replies = new java.util.concurrent.CopyOnWriteArrayList<>();
    final CompletableFuture<Status> done = new CompletableFuture<>();

    @Override
    public void onNext(T value) {
      replies.add(value);
    }

    @Override
    public void onError(Throwable t) {
      done.complete(Status.fromThrowable(t));
    }

    @Override
    public void onCompleted() {
      done.complete(Status.OK);
    }

    Outcome<T> await() throws Exception {
      Status s = done.get(60, TimeUnit.SECONDS);
      return new Outcome<>(List.copyOf(replies), s);
    }
  }

  /** Sends the messages on UpdateWeightsCuda and completes the stream. */
  Outcome<UpdateWeightsCudaReply> sendCuda(List<UpdateWeightsRequest> messages) throws Exception {
    Replies<UpdateWeightsCudaReply> replies = new Replies<>();
    StreamObserver<UpdateWeightsRequest> out = WeightSyncGrpc.newStub(channel)
        .updateWeightsCuda(replies);
    messages.forEach(out::onNext);
    out.onCompleted();
    return replies.await();
  }

  /** Sends the messages; then completes the stream, or cancels it when {@code cancel}. */
  Status send(List<UpdateWeightsRequest> messages, boolean complete, boolean cancel)
      throws Exception {
    Replies<UpdateWeightsResponse> replies = new Replies<>();
    var call = channel.newCall(WeightSyncGrpc.getUpdateWeightsMethod(), io.grpc.CallOptions.DEFAULT);
    StreamObserver<UpdateWeightsRequest> out =
        io.grpc.stub.ClientCalls.asyncClientStreamingCall(call, replies);
    for (UpdateWeightsRequest m : messages) {
      out.onNext(m);
    }
    if (cancel) {
      // hang up once the sidecar has the part open, and return once it has discarded it
      // (without a header nothing can be staged: it is cancelled at once)
      String version = messages.stream().filter(UpdateWeightsRequest::hasHeader).findFirst()
          .map(m -> m.getHeader().getWeightVersion()).orElse(null);
      if (version != null) {
        awaitInProgress(version, true, replies.done); // or refused already (a fuzzed header)
      }
      call.cancel("the trainer went away", null);
      if (version != null) {
        awaitInProgress(version, false, null);
      }
    } else if (complete) {
      out.onCompleted();
    }
    return replies.await().status();
  }

  /**
   * Waits (up to 10 s) until the sidecar's status lists {@code version} in progress, or not, or
   * until {@code ended} (when given) is done.
   */
  void awaitInProgress(String version, boolean listed, CompletableFuture<Status> ended)
      throws InterruptedException {
    var status = WeightSyncGrpc.newBlockingStub(channel);
    for (long end = System.nanoTime() + 10_000_000_000L; System.nanoTime() < end; ) {
      if (ended != null && ended.isDone()) {
        return;
      }
      boolean in = status.getStatus(dev.weightsync.proto.v1.GetStatusRequest.getDefaultInstance())
          .getInProgressList().stream().anyMatch(p -> p.getWeightVersion().equals(version));
      if (in == listed) {
        return;
      }
      Thread.sleep(10);
    }
    throw new AssertionError("version " + version + (listed ? " never showed" : " still shows")
        + " in the sidecar's status");
  }

  @Override
  public void close() {
    channel.shutdownNow();
  }
}
