package dev.weightsync.server;

import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.net.InetSocketAddress;

/**
 * The JDK's HTTP server, with TCP_NODELAY on its connections. Without it, it writes a response's
 * headers and body as two segments and Nagle's algorithm holds the body until the client's
 * delayed ACK: about 40 ms added to every small answer (the stand-in engine's session of seven
 * calls took 300 ms instead of 50; a Prometheus scrape waited as well).
 */
public final class HttpServers {

  static {
    // Read once per JVM, when the first server is made; a value the user set is kept.
    if (System.getProperty("sun.net.httpserver.nodelay") == null) {
      System.setProperty("sun.net.httpserver.nodelay", "true");
    }
  }

  private HttpServers() {
  }

  /** An unstarted server bound to {@code address}. */
  public static HttpServer create(InetSocketAddress address) throws IOException {
    return HttpServer.create(address, 0);
  }
}
