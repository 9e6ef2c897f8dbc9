package dev.weightsync.server;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;

/** The metrics port: {@code /healthz} (liveness), {@code /readyz} and Prometheus' {@code /metrics}. */
final class OpsHttp implements AutoCloseable {

  private final HttpServer http;

  /** Binds {@code port} (0: any free one) on every interface and starts serving. */
  OpsHttp(int port, Readiness readiness, PrometheusMeterRegistry registry) throws IOException {
    http = HttpServers.create(new InetSocketAddress(port));
    http.createContext("/healthz", ex -> respond(ex, 200, "ok\n", "text/plain"));
    http.createContext("/readyz", ex -> {
      String problem = readiness.refresh();
      respond(ex, problem == null ? 200 : 503, problem == null ? "ready\n" : problem + "\n",
          "text/plain");
    });
    http.createContext("/metrics", ex -> respond(ex, 200, registry.scrape(),
        "text/plain; version=0.0.4; charset=utf-8"));
    http.start();
  }

  int port() {
    return http.getAddress().getPort();
  }

  private static void respond(HttpExchange ex, int status, String body, String type)
      throws IOException {
    byte[] bytes = body.getBytes(StandardCharsets.UTF_8);
    ex.getResponseHeaders().set("Content-Type", type);
    ex.sendResponseHeaders(status, bytes.length);
    try (OutputStream out = ex.getResponseBody()) {
      out.write(bytes);
    }
  }

  @Override
  public void close() {
    http.stop(0);
  }
}
