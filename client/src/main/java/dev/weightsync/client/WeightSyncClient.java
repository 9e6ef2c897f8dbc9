package dev.weightsync.client;

import com.google.protobuf.UnsafeByteOperations;
import dev.weightsync.core.checkpoint.CheckpointFolder;
import dev.weightsync.core.tensor.TensorSpec;
import dev.weightsync.proto.v1.Commit;
import dev.weightsync.proto.v1.GetStatusRequest;
import dev.weightsync.proto.v1.GetStatusResponse;
import dev.weightsync.proto.v1.Header;
import dev.weightsync.proto.v1.TensorChunk;
import dev.weightsync.proto.v1.UpdateWeightsRequest;
import dev.weightsync.proto.v1.UpdateWeightsResponse;
import dev.weightsync.proto.v1.WeightSyncGrpc;
import io.grpc.Context;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.netty.NettyChannelBuilder;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientResponseObserver;
import io.grpc.stub.MetadataUtils;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionService;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorCompletionService;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import java.util.zip.CRC32C;

/**
 * Streams weight versions to a weightsync sidecar. One {@link #push} sends one part of one
 * version and returns when the whole version has been loaded (or has failed). Sending waits
 * whenever the transport is not ready (client-side flow control), and a part that fails with
 * UNAVAILABLE is retried as a whole.
 *
 * <p>Thread-safe: parts may be pushed from several threads at once.
 */
public final class WeightSyncClient implements AutoCloseable {

  public static final int DEFAULT_CHUNK_BYTES = 4 << 20;
  /**
   * Bytes the client may queue ahead of the transport. gRPC's default (32 KiB) makes every 4 MiB
   * chunk wait until the previous one has left, so the connection idles between chunks.
   */
  static final int SEND_AHEAD_BYTES = 16 << 20;

  /** The first channel: status calls, single parts, and the first stream of a parallel push. */
  private final ManagedChannel channel;
  /**
   * Opens another connection to the same sidecar, so that each stream of a parallel push has one
   * of its own: one connection's event loop tops out near one core (about 2 GB/s), and streams
   * multiplexed on one connection do not scale (../shared/tools/grpcbench). Null for a channel
   * the caller gave, which all streams then share.
   */
  private final java.util.function.Supplier<ManagedChannel> opener;
  /** The channels this client opened, in stream order; guarded by itself. */
  private final List<ManagedChannel> opened = new ArrayList<>();
  private final int chunkBytes;
  private final int attempts;

  /** A client over {@code channel}, which the caller owns; every stream shares it. */
  public WeightSyncClient(ManagedChannel channel, int chunkBytes, int attempts) {
    this(channel, null, chunkBytes, attempts);
  }

  private WeightSyncClient(ManagedChannel channel,
      java.util.function.Supplier<ManagedChannel> opener, int chunkBytes, int attempts) {
    if (chunkBytes < 1 || chunkBytes > DEFAULT_CHUNK_BYTES) {
      throw new IllegalArgumentException("chunk size must be 1.." + DEFAULT_CHUNK_BYTES);
    }
    this.channel = channel;
    this.opener = opener;
    this.chunkBytes = chunkBytes;
    this.attempts = attempts;
    if (opener != null) {
      opened.add(channel);
    }
  }

  /** The channel of stream {@code stream} of a parallel push: a connection of its own. */
  private ManagedChannel channel(int stream) {
    if (opener == null) {
      return channel;
    }
    synchronized (opened) {
      while (opened.size() <= stream) {
        opened.add(opener.get());
      }
      return opened.get(stream);
    }
  }

  /** A client over a plaintext channel to {@code target} (HOST:PORT, or unix:///PATH). */
  public static WeightSyncClient connect(String target) {
    return connect(target, null);
  }

  /**
   * A client over a plaintext channel to {@code target} (HOST:PORT) that sends {@code token} as
   * {@code authorization: Bearer <token>} on every call (none when null).
   */
  public static WeightSyncClient connect(String target, String token) {
    return connect(target, token, 3);
  }

  /**
   * As {@link #connect(String, String)}, trying each part up to {@code attempts} times while the
   * sidecar is UNAVAILABLE (waits 0.2 s, 0.4 s, 0.8 s... between tries).
   */
  public static WeightSyncClient connect(String target, String token, int attempts) {
    try {
      return connect(target, token, attempts, null);
    } catch (IOException e) {
      throw new java.io.UncheckedIOException(e); // plaintext reads no files
    }
  }

  /**
   * As {@link #connect(String, String, int)}, over TLS when {@code tls} is not null (plaintext
   * otherwise).
   *
   * @throws IOException when a certificate, key or CA file cannot be read
   */
  public static WeightSyncClient connect(String target, String token, int attempts, ClientTls tls)
      throws IOException {
    return connect(target, token, attempts, tls, DEFAULT_CHUNK_BYTES);
  }

  /**
   * As {@link #connect(String, String, int, ClientTls)}, cutting tensors into chunks of
   * {@code chunkBytes} (at most {@link #DEFAULT_CHUNK_BYTES}).
   *
   * @throws IOException when a certificate, key or CA file cannot be read
   */
  public static WeightSyncClient connect(String target, String token, int attempts, ClientTls tls,
      int chunkBytes) throws IOException {
    NettyChannelBuilder b = (tls == null
        ? NettyChannelBuilder.forTarget(target).usePlaintext()
        : NettyChannelBuilder.forTarget(target, tls.credentials()))
        .maxInboundMessageSize(8 << 20);
    if (UnixSockets.isUnix(target)) { // unix:///PATH: the sidecar on this node, by its socket file
      UnixSockets.requireAvailable("target " + target);
      b.channelType(UnixSockets.clientChannelType()).eventLoopGroup(UnixSockets.clientLoops());
    }
    Metadata headers = new Metadata();
    // the name the sidecar shares its streams by (with the token): this process
    headers.put(Metadata.Key.of("weightsync-caller", Metadata.ASCII_STRING_MARSHALLER),
        callerName());
    if (token != null) {
      headers.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER),
          "Bearer " + token);
    }
    b.intercept(MetadataUtils.newAttachHeadersInterceptor(headers));
    // Each build() is a channel with connections of its own (channels never share them).
    return new WeightSyncClient(b.build(), b::build, chunkBytes, attempts);
  }

  /** host:pid, the name this process declares to the sidecar as its caller identity. */
  static String callerName() {
    String host;
    try {
      host = java.net.InetAddress.getLocalHost().getHostName();
    } catch (java.net.UnknownHostException e) {
      host = "unknown-host";
    }
    return (host + ":" + ProcessHandle.current().pid()).replaceAll("[^\\x21-\\x7e]", "?");
  }

  /**
   * Whether the sidecar answers within {@code timeout} (a refusal such as UNAUTHENTICATED counts:
   * it is there).
   */
  public boolean reachable(java.time.Duration timeout) {
    try {
      WeightSyncGrpc.newBlockingStub(channel)
          .withDeadlineAfter(timeout.toMillis(), TimeUnit.MILLISECONDS)
          .getStatus(GetStatusRequest.getDefaultInstance());
      return true;
    } catch (StatusRuntimeException e) {
      Status.Code c = e.getStatus().getCode();
      return c != Status.Code.UNAVAILABLE && c != Status.Code.DEADLINE_EXCEEDED;
    }
  }

  public GetStatusResponse status() {
    return WeightSyncGrpc.newBlockingStub(channel).withDeadlineAfter(30, TimeUnit.SECONDS)
        .getStatus(GetStatusRequest.getDefaultInstance());
  }

  /**
   * Asks the sidecar to resume {@code engine} (an operator's release); one that may hold a mix
   * of two versions only with {@code acceptMixed}.
   *
   * @throws StatusRuntimeException FAILED_PRECONDITION saying why it was not resumed
   */
  public dev.weightsync.proto.v1.ResumeEngineResponse resumeEngine(String engine,
      boolean acceptMixed) {
    return WeightSyncGrpc.newBlockingStub(channel).withDeadlineAfter(120, TimeUnit.SECONDS)
        .resumeEngine(dev.weightsync.proto.v1.ResumeEngineRequest.newBuilder().setEngine(engine)
            .setAcceptMixed(acceptMixed).build());
  }

  /** Pushes every tensor of a checkpoint folder as one part. */
  public UpdateWeightsResponse pushFolder(Path dir, String version, int part, int parts)
      throws IOException {
    try (CheckpointFolder folder = CheckpointFolder.open(dir)) {
      return push(version, part, parts, tensorsOf(folder));
    }
  }

  /** Pushes every tensor of a checkpoint folder as a whole version over parallel streams. */
  public UpdateWeightsResponse pushFolderParallel(Path dir, String version, int streams)
      throws IOException {
    try (CheckpointFolder folder = CheckpointFolder.open(dir)) {
      return pushParallel(version, tensorsOf(folder), streams);
    }
  }

  private static List<Tensor> tensorsOf(CheckpointFolder folder) throws IOException {
    List<Tensor> tensors = new ArrayList<>();
    for (TensorSpec t : folder.tensors()) {
      tensors.add(new Tensor(t, folder.source(t.name())));
    }
    return tensors;
  }

  /**
   * Sends {@code tensors} as the whole of {@code version}, split into {@code streams} parts of
   * about equal bytes that go over as many parallel streams (fewer when there are fewer tensors).
   * Returns when the version has been loaded; when it fails, throws the part's error that says
   * why (not the ABORTED of the parts the sidecar stopped because of it).
   *
   * @throws StatusRuntimeException with the sidecar's status when the version fails
   */
  public UpdateWeightsResponse pushParallel(String version, List<Tensor> tensors, int streams)
      throws IOException {
    List<List<Tensor>> parts = PartSplitter.split(tensors, streams);
    if (parts.size() == 1) {
      return push(version, 0, 1, parts.get(0));
    }
    ExecutorService senders = Executors.newFixedThreadPool(parts.size(), r -> {
      Thread t = new Thread(r, "weightsync-push-" + version);
      t.setDaemon(true);
      return t;
    });
    // A part refused for good (a NaN, a wrong shape) would leave the other parts waiting for a
    // version that cannot complete: the first failure cancels every call of this push.
    Context.CancellableContext calls = Context.current().withCancellation();
    CompletionService<UpdateWeightsResponse> sent = new ExecutorCompletionService<>(senders);
    try {
      for (int p = 0; p < parts.size(); p++) {
        int part = p;
        Header header = Header.newBuilder().setWeightVersion(version).setPartIndex(part)
            .setPartCount(parts.size()).build();
        sent.submit(calls.wrap(() -> push(channel(part), header, parts.get(part))));
      }
      UpdateWeightsResponse response = null;
      Throwable cause = null;
      for (int p = 0; p < parts.size(); p++) {
        try {
          response = sent.take().get();
        } catch (ExecutionException e) {
          cause = moreTelling(cause, e.getCause());
          calls.cancel(e.getCause());
        }
      }
      if (cause instanceof IOException io) {
        throw io;
      }
      if (cause != null) {
        throw cause instanceof StatusRuntimeException s ? s : Status.fromThrowable(cause)
            .asRuntimeException();
      }
      return response;
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw Status.CANCELLED.withDescription("interrupted").asRuntimeException();
    } finally {
      calls.cancel(null);
      senders.shutdownNow();
    }
  }

  /** The failure that says why: one the sidecar gave, not the cancellation that followed it. */
  private static Throwable moreTelling(Throwable first, Throwable next) {
    if (first == null) {
      return next;
    }
    return consequence(first) && !consequence(next) ? next : first;
  }

  private static boolean consequence(Throwable t) {
    Status.Code c = Status.fromThrowable(t).getCode();
    return c == Status.Code.CANCELLED || c == Status.Code.ABORTED;
  }

  /**
   * Sends {@code tensors} as part {@code part} of {@code parts} of {@code version}.
   *
   * @throws StatusRuntimeException with the sidecar's status when the version fails
   */
  public UpdateWeightsResponse push(String version, int part, int parts, List<Tensor> tensors)
      throws IOException {
    return push(Header.newBuilder().setWeightVersion(version).setPartIndex(part)
        .setPartCount(parts).build(), tensors);
  }

  /**
   * Sends {@code tensors} under {@code header} (version, part, and for a relay the payload kind
   * and quantization config), retrying the whole part while the sidecar is UNAVAILABLE.
   *
   * @throws StatusRuntimeException with the sidecar's status when the version fails
   */
  public UpdateWeightsResponse push(Header header, List<Tensor> tensors) throws IOException {
    return push(channel, header, tensors);
  }

  private UpdateWeightsResponse push(ManagedChannel over, Header header, List<Tensor> tensors)
      throws IOException {
    StatusRuntimeException last = null;
    for (int attempt = 0; attempt < attempts; attempt++) {
      try {
        return pushOnce(over, header, tensors);
      } catch (StatusRuntimeException e) {
        if (e.getStatus().getCode() != Status.Code.UNAVAILABLE) {
          throw e;
        }
        last = e;
        sleep(200L << attempt);
      }
    }
    throw last;
  }

  private UpdateWeightsResponse pushOnce(ManagedChannel over, Header header, List<Tensor> tensors)
      throws IOException {
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
            return await(result);
          }
          if (length == 0) {
            break;
          }
        }
      }
      send(s, ready, result, UpdateWeightsRequest.newBuilder().setCommit(Commit.newBuilder()
          .setTensorCount(tensors.size()).setTotalBytes(total)).build());
      if (!result.isDone()) {
        s.onCompleted();
      }
    } catch (IOException | RuntimeException e) {
      s.cancel("client failed: " + e.getMessage(), e);
      throw e;
    }
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

  private static void sleep(long ms) {
    try {
      Thread.sleep(ms);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  @Override
  public void close() {
    List<ManagedChannel> mine;
    synchronized (opened) {
      mine = List.copyOf(opened);
    }
    mine.forEach(ManagedChannel::shutdown);
    try {
      for (ManagedChannel c : mine) {
        c.awaitTermination(5, TimeUnit.SECONDS);
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
