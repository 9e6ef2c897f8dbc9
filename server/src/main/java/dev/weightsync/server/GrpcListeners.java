package dev.weightsync.server;

import dev.weightsync.client.UnixSockets;
import dev.weightsync.server.config.ListenAddress;
import io.grpc.Server;
import io.grpc.ServerBuilder;
import io.grpc.ServerCredentials;
import io.grpc.netty.NettyServerBuilder;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.MultiThreadIoEventLoopGroup;
import io.netty.channel.epoll.EpollIoHandler;
import io.netty.channel.epoll.EpollServerDomainSocketChannel;
import io.netty.channel.unix.DomainSocketAddress;
import io.netty.util.concurrent.DefaultThreadFactory;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;

/**
 * The sidecar's gRPC servers, one per kind of address it listens on (the {@code listen} key):
 * its TCP addresses (with TLS when configured), and its Unix-domain sockets, which Netty serves
 * with another channel type and so needs a server of their own. Both carry the same services
 * and interceptors (a bearer token is asked for on either) and start and stop together.
 *
 * <p>Or one server from a builder the caller gives (for tests of the protocol, grpc-java's
 * in-process transport): the same services and interceptors without a socket ({@link #of}).
 *
 * <p>A socket file is made mode 0660: whoever may write it may connect, the owner and its
 * group (a pod's containers sharing an emptyDir). A socket file left by a process that died is
 * replaced; one a live server answers on is refused as in use. Socket files are removed on stop.
 */
final class GrpcListeners {

  private final List<Server> servers = new ArrayList<>();
  private final Server tcp;
  private final List<Path> sockets = new ArrayList<>();
  private final List<ListenAddress> addresses;
  private EventLoopGroup socketLoops;

  /**
   * @param tls credentials for the TCP addresses, or null for plaintext
   * @param common what every server gets: services, interceptors, limits
   */
  GrpcListeners(List<ListenAddress> addresses, ServerCredentials tls,
      Consumer<ServerBuilder<?>> common) {
    this.addresses = List.copyOf(addresses);
    NettyServerBuilder tcpBuilder = null;
    NettyServerBuilder socketBuilder = null;
    for (ListenAddress a : addresses) {
      if (a.unix()) {
        sockets.add(a.socket());
        DomainSocketAddress at = new DomainSocketAddress(a.socket().toString());
        if (socketBuilder == null) {
          UnixSockets.requireAvailable("listen " + a);
          socketLoops = new MultiThreadIoEventLoopGroup(0,
              new DefaultThreadFactory("weightsync-uds", true), EpollIoHandler.newFactory());
          socketBuilder = NettyServerBuilder.forAddress(at)
              .channelType(EpollServerDomainSocketChannel.class)
              .bossEventLoopGroup(socketLoops).workerEventLoopGroup(socketLoops);
        } else {
          socketBuilder.addListenAddress(at);
        }
      } else if (tcpBuilder == null) {
        tcpBuilder = tls == null ? NettyServerBuilder.forAddress(a.socketAddress())
            : NettyServerBuilder.forAddress(a.socketAddress(), tls);
      } else {
        tcpBuilder.addListenAddress(a.socketAddress());
      }
    }
    tcp = build(tcpBuilder, common);
    build(socketBuilder, common);
  }

  /** One server from {@code b}, which knows where it listens. */
  static GrpcListeners of(ServerBuilder<?> b, Consumer<ServerBuilder<?>> common) {
    return new GrpcListeners(b, common);
  }

  private GrpcListeners(ServerBuilder<?> b, Consumer<ServerBuilder<?>> common) {
    this.addresses = List.of();
    common.accept(b);
    servers.add(b.build());
    tcp = null;
  }

  private Server build(NettyServerBuilder b, Consumer<ServerBuilder<?>> common) {
    if (b == null) {
      return null;
    }
    common.accept(b);
    // A fixed HTTP/2 window (no BDP auto-tuning): what Netty buffers per stream stays bounded
    // while the service's manual flow control holds a sender back.
    b.flowControlWindow(4 << 20);
    Server s = b.build();
    servers.add(s);
    return s;
  }

  void start() throws IOException {
    for (Path socket : sockets) {
      clearStale(socket);
    }
    try {
      for (Server s : servers) {
        s.start();
      }
    } catch (IOException e) {
      shutdownNow();
      throw e;
    }
    for (Path socket : sockets) {
      Files.setPosixFilePermissions(socket, PosixFilePermissions.fromString("rw-rw----"));
    }
  }

  /** A socket file nothing answers on (its server died) is removed; a live one is in use. */
  private static void clearStale(Path socket) throws IOException {
    if (!Files.exists(socket, java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
      if (socket.getParent() != null && !Files.isDirectory(socket.getParent())) {
        throw new IOException("listen unix://" + socket + ": folder " + socket.getParent()
            + " does not exist");
      }
      return;
    }
    if (Files.isDirectory(socket) || Files.isRegularFile(socket,
        java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
      throw new IOException("listen unix://" + socket + ": a file or folder of that name exists"
          + " and is not a socket");
    }
    try (SocketChannel c = SocketChannel.open(UnixDomainSocketAddress.of(socket))) {
      throw new IOException("listen unix://" + socket + " is already in use (a server answers"
          + " on it)");
    } catch (IOException e) {
      if (e.getMessage() != null && e.getMessage().contains("already in use")) {
        throw e;
      }
      Files.deleteIfExists(socket); // nothing answers: left by a process that died
    }
  }

  /** The first TCP address's port (the real one when configured as 0), or -1 without TCP. */
  int port() {
    return tcp == null ? -1 : ((InetSocketAddress) tcp.getListenSockets().get(0)).getPort();
  }

  List<ListenAddress> addresses() {
    return addresses;
  }

  void shutdown() {
    servers.forEach(Server::shutdown);
  }

  void shutdownNow() {
    servers.forEach(Server::shutdownNow);
    removeSockets();
  }

  /** Waits until every server has stopped, at most {@code millis}; whether they all have. */
  boolean awaitTermination(long millis) throws InterruptedException {
    long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(millis);
    for (Server s : servers) {
      long left = deadline - System.nanoTime();
      if (!s.awaitTermination(Math.max(0, left), TimeUnit.NANOSECONDS)) {
        return false;
      }
    }
    removeSockets();
    return true;
  }

  void awaitTermination() throws InterruptedException {
    for (Server s : servers) {
      s.awaitTermination();
    }
  }

  private void removeSockets() {
    for (Path socket : sockets) {
      try {
        Files.deleteIfExists(socket);
      } catch (IOException e) {
        // the file stays; the next start replaces it (nothing answers on it)
      }
    }
    if (socketLoops != null) {
      socketLoops.shutdownGracefully(0, 1, TimeUnit.SECONDS);
    }
  }
}
