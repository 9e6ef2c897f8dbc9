package dev.weightsync.client;

import com.google.protobuf.UnsafeByteOperations;
import dev.weightsync.core.tensor.TensorSpec;
import dev.weightsync.proto.v1.Commit;
import dev.weightsync.proto.v1.Header;
import dev.weightsync.proto.v1.TensorChunk;
import dev.weightsync.proto.v1.UpdateWeightsRequest;
import dev.weightsync.proto.v1.UpdateWeightsResponse;
import dev.weightsync.proto.v1.WeightSyncGrpc;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientResponseObserver;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.atomic.AtomicReference;
import java.util.zip.CRC32C;

/**
 * One attempt at one part: the header, every tensor's chunks (wrapped, not copied, each with its
 * CRC32C) and the commit, sent whenever the transport is ready (client-side flow control), then
 * the version's response.
 */
final class PartUpload {

  /**
   * Bytes the client may queue ahead of the transport. gRPC's default (32 KiB) makes every 4 MiB
   * chunk wait until the previous one has left, so the connection idles between chunks.
   */
  static final int SEND_AHEAD_BYTES = 16 << 20;

  private PartUpload() {
  }

  /**
   * Sends {@code tensors} under {@code header} over one new stream on {@code over}, in chunks of
   * {@code chunkBytes}, each with its CRC32C; returns the version's response.
   *
   * @throws StatusRuntimeException with the sidecar's status when the part or version fails
   */
  static UpdateWeightsResponse send(ManagedChannel over, Header header, List<Tensor> tensors,
      int chunkBytes) throws IOException {
    CompletableFuture<UpdateWeightsResponse> result = new CompletableFuture<>();
    Object ready = new Object();
    AtomicReference<ClientCallStreamObserver<UpdateWeightsRequest>> stream = new AtomicReference<>();
    ClientResponseObserver<UpdateWeightsRequest, UpdateWeightsResponse> observer =
        new ClientResponseObserver<>() {
          private UpdateWeightsResponse response;

          @Override
          public void beforeStart(ClientCallStreamObserver<UpdateWeightsRequest> s) {
            stream.set(s);
            s.setOnReadyHandler(() -> {
              synchronized (ready) {
                ready.notifyAll();
              }
            });
          }

          @Override
          public void onNext(UpdateWeightsResponse value) {
            response = value;
          }

          @Override
          public void onError(Throwable t) {
            result.completeExceptionally(t);
            synchronized (ready) {
              ready.notifyAll();
            }
          }

          @Override
          public void onCompleted() {
            result.complete(response);
          }
        };
    WeightSyncGrpc.newStub(over).withOnReadyThreshold(SEND_AHEAD_BYTES).updateWeights(observer);
    ClientCallStreamObserver<UpdateWeightsRequest> s = stream.get();
    try {
      send(s, ready, result, UpdateWeightsRequest.newBuilder().setHeader(header).build());
      long total = 0;
      CRC32C crc = new CRC32C();
      for (Tensor t : tensors) {
        TensorSpec spec = t.spec();
        long length = spec.byteLength();
        total += length;
        for (long off = 0; off == 0 || off < length; off += chunkBytes) {
          int n = (int) Math.min(chunkBytes, length - off);
          ByteBuffer window = t.source().window(off, n);
          crc.reset();
          crc.update(window.duplicate());
          TensorChunk.Builder c = TensorChunk.newBuilder().setName(spec.name())
              .setDtype(spec.dtype().name()).setOffset(off).setData(UnsafeByteOperations.unsafeWrap(window))
              .setCrc32C((int) crc.getValue());
          for (long d : spec.shape()) {
            c.addShape(d);
          }
          if (!send(s, ready, result, UpdateWeightsRequest.newBuilder().setChunk(c).build())) {
            return ended(s, result);
          }
          if (length == 0) {
            break;
          }
        }
      }
      send(s, ready, result, UpdateWeightsRequest.newBuilder().setCommit(Commit.newBuilder()
          .setTensorCount(tensors.size()).setTotalBytes(total)).build());
      if (result.isDone()) {
        return ended(s, result);
      }
      s.onCompleted();
    } catch (IOException | RuntimeException e) {
      s.cancel("client failed: " + e.getMessage(), e);
      throw e;
    }
    return await(result);
  }

  /**
   * The sidecar ended the call before this side half-closed. Without a cancel the stream stays
   * open on this side, and the channel's shutdown waits for it.
   */
  private static UpdateWeightsResponse ended(ClientCallStreamObserver<UpdateWeightsRequest> s,
      CompletableFuture<UpdateWeightsResponse> result) {
    s.cancel("the sidecar ended the call", null);
    return await(result);
  }

  /** Sends when the transport is ready; false when the call already ended (e.g. refused). */
  private static boolean send(ClientCallStreamObserver<UpdateWeightsRequest> s, Object ready,
      CompletableFuture<?> result, UpdateWeightsRequest req) {
    synchronized (ready) {
      while (!s.isReady() && !result.isDone()) {
        try {
          ready.wait(100);
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          s.cancel("interrupted", e);
          throw new StatusRuntimeException(Status.CANCELLED.withDescription("interrupted"));
        }
      }
    }
    if (result.isDone()) {
      return false;
    }
    s.onNext(req);
    return true;
  }

  private static UpdateWeightsResponse await(CompletableFuture<UpdateWeightsResponse> result) {
    try {
      return result.get();
    } catch (ExecutionException e) {
      if (e.getCause() instanceof StatusRuntimeException s) {
        throw s;
      }
      throw Status.fromThrowable(e.getCause()).asRuntimeException();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw Status.CANCELLED.withDescription("interrupted").asRuntimeException();
    }
  }
}
