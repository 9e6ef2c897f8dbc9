package dev.weightsync.server.ingest;

import com.google.protobuf.ByteString;
import com.google.protobuf.CodedInputStream;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.UnsafeByteOperations;
import dev.weightsync.proto.v1.UpdateWeightsCudaReply;
import dev.weightsync.proto.v1.UpdateWeightsRequest;
import dev.weightsync.proto.v1.UpdateWeightsResponse;
import dev.weightsync.proto.v1.WeightSyncGrpc;
import io.grpc.Detachable;
import io.grpc.HasByteBuffer;
import io.grpc.KnownLength;
import io.grpc.MethodDescriptor;
import io.grpc.ServerMethodDefinition;
import io.grpc.ServerServiceDefinition;
import io.grpc.ServiceDescriptor;
import io.grpc.Status;
import io.grpc.protobuf.ProtoUtils;
import io.grpc.stub.ServerCalls;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;

/**
 * Parses an {@link UpdateWeightsRequest} without copying its tensor bytes. The Netty transport
 * hands over each message as a list of its (direct, pooled) buffers, one per HTTP/2 DATA frame;
 * this marshaller takes them over ({@link Detachable}), parses with aliasing, so that a chunk's
 * {@code data} is a rope over Netty's memory, and gives them back to Netty's pool when
 * {@link Received#release()} is called, once the bytes are spooled.
 *
 * <p>The stock marshaller copies a message into a {@code byte[]} and then copies the bytes field
 * again: two copies and a 4 MiB heap allocation per chunk, which cost more CPU than the rest of
 * gRPC (measured in ../shared/tools/grpcbench and docs/measurements/). Where the transport's
 * buffers are not all ByteBuffer-backed (grpc coalesces runs of tiny frames into a heap array)
 * it copies once into a byte array and parses aliasing that.
 *
 * <p>A message that does not parse is handed on as refused (never thrown: gRPC would answer a
 * marshaller's exception with a status of its own choosing), for the stream to end with
 * INVALID_ARGUMENT naming why.
 */
final class ZeroCopyRequests implements MethodDescriptor.Marshaller<ZeroCopyRequests.Received> {

  private static final MethodDescriptor.Marshaller<UpdateWeightsRequest> STOCK =
      ProtoUtils.marshaller(UpdateWeightsRequest.getDefaultInstance());

  /**
   * A parsed request and, when its bytes alias the transport's buffers, those buffers; or, for a
   * message that did not parse, why.
   */
  static final class Received {
    private final UpdateWeightsRequest request;
    private final Status refused;
    private InputStream buffers;

    private Received(UpdateWeightsRequest request, Status refused, InputStream buffers) {
      this.request = request;
      this.refused = refused;
      this.buffers = buffers;
    }

    /** The request; null when {@link #refused()} is not. */
    UpdateWeightsRequest request() {
      return request;
    }

    /** INVALID_ARGUMENT saying why the message is not an UpdateWeightsRequest, or null. */
    Status refused() {
      return refused;
    }

    /**
     * Gives the transport's buffers back; the request's bytes must not be read afterwards.
     * Idempotent.
     */
    void release() {
      InputStream b = buffers;
      buffers = null;
      if (b != null) {
        try {
          b.close();
        } catch (IOException e) {
          // Netty's buffers close without I/O; nothing is left to free
        }
      }
    }
  }

  /**
   * {@code stock} (the generated binding) with UpdateWeights and UpdateWeightsCuda parsed by this
   * marshaller and handled by {@code update} and {@code cuda}; its other methods as they are.
   */
  static ServerServiceDefinition bind(ServerServiceDefinition stock,
      ServerCalls.ClientStreamingMethod<Received, UpdateWeightsResponse> update,
      ServerCalls.BidiStreamingMethod<Received, UpdateWeightsCudaReply> cuda) {
    ZeroCopyRequests requests = new ZeroCopyRequests();
    MethodDescriptor<Received, UpdateWeightsResponse> updateMethod = WeightSyncGrpc
        .getUpdateWeightsMethod().toBuilder(requests,
            WeightSyncGrpc.getUpdateWeightsMethod().getResponseMarshaller()).build();
    MethodDescriptor<Received, UpdateWeightsCudaReply> cudaMethod = WeightSyncGrpc
        .getUpdateWeightsCudaMethod().toBuilder(requests,
            WeightSyncGrpc.getUpdateWeightsCudaMethod().getResponseMarshaller()).build();
    ServiceDescriptor generated = WeightSyncGrpc.getServiceDescriptor();
    ServiceDescriptor.Builder descriptor = ServiceDescriptor.newBuilder(generated.getName())
        .setSchemaDescriptor(generated.getSchemaDescriptor()) // for reflection
        .addMethod(updateMethod).addMethod(cudaMethod);
    List<ServerMethodDefinition<?, ?>> others = new ArrayList<>();
    for (ServerMethodDefinition<?, ?> m : stock.getMethods()) {
      String name = m.getMethodDescriptor().getFullMethodName();
      if (!name.equals(updateMethod.getFullMethodName())
          && !name.equals(cudaMethod.getFullMethodName())) {
        descriptor.addMethod(m.getMethodDescriptor());
        others.add(m);
      }
    }
    ServerServiceDefinition.Builder b = ServerServiceDefinition.builder(descriptor.build())
        .addMethod(updateMethod, ServerCalls.asyncClientStreamingCall(update))
        .addMethod(cudaMethod, ServerCalls.asyncBidiStreamingCall(cuda));
    others.forEach(b::addMethod);
    return b.build();
  }

  @Override
  public InputStream stream(Received value) {
    return STOCK.stream(value.request());
  }

  @Override
  public Received parse(InputStream in) {
    if (in instanceof Detachable d && in instanceof HasByteBuffer h && in instanceof KnownLength
        && h.byteBufferSupported()) {
      InputStream owned = d.detach();
      try {
        return new Received(parse(pieces(owned)), null, owned);
      } catch (IOException | RuntimeException e) {
        close(owned);
        return refused(e);
      }
    }
    try {
      return new Received(parse(copy(in)), null, null);
    } catch (IOException | RuntimeException e) {
      return refused(e);
    }
  }

  /** The message's bytes as the transport's own buffers, wrapped without copying. */
  private static ByteString pieces(InputStream owned) throws IOException {
    int size = owned.available();
    // mark(): stepping past a buffer with skip() must not release it; reset() rewinds.
    owned.mark(size);
    List<ByteString> parts = new ArrayList<>();
    while (owned.available() > 0) {
      ByteBuffer b = ((HasByteBuffer) owned).getByteBuffer();
      int n = b == null ? 0 : b.remaining();
      if (n == 0) {
        throw new IOException("the transport gave an empty buffer with " + owned.available()
            + " bytes of the message left");
      }
      parts.add(UnsafeByteOperations.unsafeWrap(b));
      owned.skip(n);
    }
    owned.reset();
    return ByteString.copyFrom(parts);
  }

  private static ByteString copy(InputStream in) throws IOException {
    if (!(in instanceof KnownLength)) {
      return ByteString.readFrom(in);
    }
    byte[] bytes = new byte[in.available()];
    int off = 0;
    while (off < bytes.length) {
      int n = in.read(bytes, off, bytes.length - off);
      if (n < 0) {
        throw new IOException("the message ended after " + off + " of " + bytes.length + " bytes");
      }
      off += n;
    }
    return UnsafeByteOperations.unsafeWrap(bytes);
  }

  private static UpdateWeightsRequest parse(ByteString bytes) throws IOException {
    CodedInputStream cis = bytes.newCodedInput();
    cis.enableAliasing(true);
    cis.setSizeLimit(Integer.MAX_VALUE); // the server's maxInboundMessageSize already bounds it
    UpdateWeightsRequest r = UpdateWeightsRequest.parser().parseFrom(cis);
    cis.checkLastTagWas(0);
    return r;
  }

  private static Received refused(Exception e) {
    String why = e instanceof InvalidProtocolBufferException ? e.getMessage()
        : String.valueOf(e.getMessage());
    return new Received(null, Status.INVALID_ARGUMENT.withDescription(
        "a message that is not an UpdateWeightsRequest: " + why).withCause(e), null);
  }

  private static void close(InputStream in) {
    try {
      in.close();
    } catch (IOException e) {
      // already failing; Netty's buffers close without I/O
    }
  }
}
