package dev.weightsync.client;

import io.netty.channel.EventLoopGroup;
import io.netty.channel.MultiThreadIoEventLoopGroup;
import io.netty.channel.epoll.Epoll;
import io.netty.channel.epoll.EpollDomainSocketChannel;
import io.netty.channel.epoll.EpollIoHandler;
import io.netty.util.concurrent.DefaultThreadFactory;

/**
 * Unix-domain sockets for gRPC over Netty: they need Netty's native epoll transport (Linux), its
 * channel type and an event loop of that transport. One loop group serves every client channel
 * of the process; its threads are daemons.
 */
public final class UnixSockets {
  private UnixSockets() {}

  private static EventLoopGroup clientLoops;

  /** Whether {@code target} names a Unix socket ({@code unix:///PATH}). */
  public static boolean isUnix(String target) {
    return target.startsWith("unix:");
  }

  /**
   * Fails with a clear message where Unix sockets cannot be used here.
   *
   * @throws IllegalStateException when Netty's epoll transport is not available
   */
  public static void requireAvailable(String what) {
    if (!Epoll.isAvailable()) {
      throw new IllegalStateException(what + " needs Netty's native epoll transport (Linux x86-64),"
          + " which is unavailable here: " + Epoll.unavailabilityCause());
    }
  }

  static synchronized EventLoopGroup clientLoops() {
    if (clientLoops == null) {
      clientLoops = new MultiThreadIoEventLoopGroup(0,
          new DefaultThreadFactory("weightsync-uds-client", true), EpollIoHandler.newFactory());
    }
    return clientLoops;
  }

  static Class<EpollDomainSocketChannel> clientChannelType() {
    return EpollDomainSocketChannel.class;
  }
}
