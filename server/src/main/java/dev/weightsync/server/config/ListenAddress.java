package dev.weightsync.server.config;

import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.nio.file.Path;

/**
 * One address the gRPC server listens on, as the {@code listen} key gives it: {@code HOST:PORT}
 * ({@code [::1]:PORT} for IPv6; port 0 picks a free one) or {@code unix:///absolute/path} for a
 * Unix-domain socket, whose file permissions are an access control of their own.
 */
public record ListenAddress(String host, int port, Path socket) {

  public static ListenAddress parse(String text) {
    if (text.startsWith("unix:")) {
      String path = text.startsWith("unix://") ? text.substring("unix://".length())
          : text.substring("unix:".length());
      if (!path.startsWith("/") || path.length() < 2) {
        throw new IllegalArgumentException("listen '" + text + "': a Unix socket is unix:///"
            + "absolute/path");
      }
      return new ListenAddress(null, -1, Path.of(path));
    }
    int colon = text.lastIndexOf(':');
    if (colon < 0) {
      throw new IllegalArgumentException("listen '" + text + "' must be HOST:PORT or unix:///PATH");
    }
    String host = text.substring(0, colon);
    if (host.startsWith("[") && host.endsWith("]")) {
      host = host.substring(1, host.length() - 1);
    }
    if (host.isEmpty()) {
      throw new IllegalArgumentException("listen '" + text + "' names no host (0.0.0.0 for all)");
    }
    int port;
    try {
      port = Integer.parseInt(text.substring(colon + 1));
    } catch (NumberFormatException e) {
      throw new IllegalArgumentException("listen '" + text + "': the port is not a number");
    }
    if (port < 0 || port > 65535) {
      throw new IllegalArgumentException("listen '" + text + "': the port must be 0..65535");
    }
    return new ListenAddress(host, port, null);
  }

  public boolean unix() {
    return socket != null;
  }

  /**
   * Whether only this host can reach it: a 127.0.0.0/8 or ::1 address, or localhost (resolved
   * here, so a name is judged by what it is bound to).
   */
  public boolean loopback() {
    if (unix()) {
      return false;
    }
    try {
      for (java.net.InetAddress a : java.net.InetAddress.getAllByName(host)) {
        if (!a.isLoopbackAddress()) {
          return false;
        }
      }
      return true;
    } catch (java.net.UnknownHostException e) {
      return false; // the bind fails later, naming the host
    }
  }

  public SocketAddress socketAddress() {
    return new InetSocketAddress(host, port);
  }

  @Override
  public String toString() {
    return unix() ? "unix://" + socket
        : (host.contains(":") ? "[" + host + "]" : host) + ":" + port;
  }
}
