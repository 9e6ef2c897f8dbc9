package dev.weightsync.server.config;

import java.net.InetAddress;
import java.net.UnknownHostException;
import java.util.ArrayList;
import java.util.List;

/**
 * A {@code relay-to} target: {@code HOST:PORT} (one engine-side sidecar) or
 * {@code dns:///NAME:PORT} (every address the name resolves to, e.g. a headless Service's pods,
 * looked up again for every version so that scaled or restarted pods are found).
 */
public record RelayTarget(String host, int port, boolean everyAddress) {

  public static RelayTarget parse(String text) {
    String t = text.trim();
    boolean dns = t.startsWith("dns:///");
    String hostPort = dns ? t.substring("dns:///".length()) : t;
    int colon = hostPort.lastIndexOf(':');
    if (colon <= 0 || colon == hostPort.length() - 1) {
      throw new IllegalArgumentException("relay-to '" + text + "': expected HOST:PORT or"
          + " dns:///NAME:PORT");
    }
    String host = hostPort.substring(0, colon);
    if (host.startsWith("[") && host.endsWith("]")) {
      host = host.substring(1, host.length() - 1); // [::1]:50051
    }
    int port;
    try {
      port = Integer.parseInt(hostPort.substring(colon + 1));
    } catch (NumberFormatException e) {
      port = -1;
    }
    if (port < 1 || port > 65535) {
      throw new IllegalArgumentException("relay-to '" + text + "': port must be 1-65535");
    }
    return new RelayTarget(host, port, dns);
  }

  /**
   * The sidecars behind this target now: one {@code host:port} for a plain target (resolved by
   * the channel), one per address for a {@code dns:///} target.
   */
  public List<String> resolve() throws UnknownHostException {
    if (!everyAddress) {
      return List.of(authority(host));
    }
    List<String> out = new ArrayList<>();
    for (InetAddress a : InetAddress.getAllByName(host)) {
      out.add(authority(a.getHostAddress()));
    }
    return out.stream().distinct().sorted().toList();
  }

  private String authority(String h) {
    return (h.contains(":") ? "[" + h + "]" : h) + ":" + port;
  }

  @Override
  public String toString() {
    return (everyAddress ? "dns:///" : "") + host + ":" + port;
  }
}
