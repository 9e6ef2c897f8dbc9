package dev.weightsync.client;

import dev.weightsync.core.checkpoint.CheckpointFolder;
import dev.weightsync.core.tensor.TensorSpec;
import dev.weightsync.proto.v1.GetStatusRequest;
import dev.weightsync.proto.v1.GetStatusResponse;
import dev.weightsync.proto.v1.Header;
import dev.weightsync.proto.v1.ResumeEngineRequest;
import dev.weightsync.proto.v1.ResumeEngineResponse;
import dev.weightsync.proto.v1.UpdateWeightsResponse;
import dev.weightsync.proto.v1.WeightSyncGrpc;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.netty.NettyChannelBuilder;
import io.grpc.stub.MetadataUtils;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;

/**
 * Streams weight versions to a weightsync sidecar. One {@link #push} sends one part of one
 * version and returns when the whole version has been loaded (or has failed). Sending waits
 * whenever the transport is not ready (client-side flow control), and a part that fails with
 * UNAVAILABLE is retried as a whole.
 *
 * <p>Thread-safe: parts may be pushed from several threads at once.
 */
public final class WeightSyncClient implements AutoCloseable {

  /** The default chunk size, and the largest (the protocol's limit). */
  public static final int DEFAULT_CHUNK_BYTES = WireLimits.MAX_CHUNK_BYTES;
  /** The first channel: status calls, single parts, and the first stream of a parallel push. */
  private final ManagedChannel channel;
  /**
   * Opens another connection to the same sidecar, so that each stream of a parallel push has one
   * of its own: one connection's event loop tops out near one core (about 2 GB/s), and streams
   * multiplexed on one connection do not scale (../shared/tools/grpcbench). Null for a channel
   * the caller gave, which all streams then share.
   */
  private final Supplier<ManagedChannel> opener;
  /** The channels this client opened, in stream order; guarded by itself. */
  private final List<ManagedChannel> opened = new ArrayList<>();
  private final int chunkBytes;
  private final int attempts;

  /** A client over {@code channel}, which the caller owns; every stream shares it. */
  public WeightSyncClient(ManagedChannel channel, int chunkBytes, int attempts) {
    this(channel, null, chunkBytes, attempts);
  }

  private WeightSyncClient(ManagedChannel channel,
      Supplier<ManagedChannel> opener, int chunkBytes, int attempts) {
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
        .maxInboundMessageSize(WireLimits.MAX_MESSAGE_BYTES);
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
  public ResumeEngineResponse resumeEngine(String engine,
      boolean acceptMixed) {
    return WeightSyncGrpc.newBlockingStub(channel).withDeadlineAfter(120, TimeUnit.SECONDS)
        .resumeEngine(ResumeEngineRequest.newBuilder().setEngine(engine)
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
    List<Header> headers = new ArrayList<>();
    for (int p = 0; p < parts.size(); p++) {
      headers.add(Header.newBuilder().setWeightVersion(version).setPartIndex(p)
          .setPartCount(parts.size()).build());
    }
    return ParallelPush.run(headers, parts, (index, header, part) ->
        push(channel(index), header, part));
  }

  /**
   * Sends {@code tensors} as the one part {@code header} names, split into {@code streams}
   * sub-parts of about equal bytes, each over a connection of its own (fewer when there are
   * fewer tensors): a part too large for one connection's speed (a relay's). The sidecar commits
   * the part once every sub-part has; a sub-part that fails with UNAVAILABLE is retried alone.
   *
   * @throws StatusRuntimeException with the sidecar's status when the version fails
   */
  public UpdateWeightsResponse pushSplit(Header header, List<Tensor> tensors, int streams)
      throws IOException {
    List<List<Tensor>> subs = PartSplitter.split(tensors, streams);
    if (subs.size() == 1) {
      return push(header, subs.get(0));
    }
    List<Header> headers = new ArrayList<>();
    for (int s = 0; s < subs.size(); s++) {
      headers.add(header.toBuilder().setSubPartIndex(s).setSubPartCount(subs.size()).build());
    }
    return ParallelPush.run(headers, subs, (index, h, sub) -> push(channel(index), h, sub));
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
        return PartUpload.send(over, header, tensors, chunkBytes);
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

  private static void sleep(long ms) {
    try {
      Thread.sleep(ms);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  /**
   * Ends the channels: calls in flight get a second to finish, then are cancelled. (A stream the
   * sidecar refused while this side still had data queued can stay open on the connection, and a
   * graceful shutdown would wait for it forever.)
   */
  @Override
  public void close() {
    List<ManagedChannel> mine;
    synchronized (opened) {
      mine = List.copyOf(opened);
    }
    mine.forEach(ManagedChannel::shutdown);
    try {
      long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(1);
      for (ManagedChannel c : mine) {
        if (!c.awaitTermination(Math.max(0, end - System.nanoTime()), TimeUnit.NANOSECONDS)) {
          c.shutdownNow();
        }
      }
      for (ManagedChannel c : mine) {
        c.awaitTermination(5, TimeUnit.SECONDS);
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
