package dev.weightsync.cli.engine;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.sun.net.httpserver.HttpExchange;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;

/** Where a stand-in route's answer goes: straight to the caller, or the faulty way ({@link Late}). */
interface Reply {

  ObjectMapper JSON = new ObjectMapper();

  void send(int status, JsonNode body) throws IOException;

  /** Answers {@code ex} with {@code body} as JSON. */
  static void json(HttpExchange ex, int status, JsonNode body) throws IOException {
    byte[] bytes = JSON.writeValueAsBytes(body);
    ex.getResponseHeaders().set("Content-Type", "application/json");
    ex.sendResponseHeaders(status, bytes.length);
    try (OutputStream out = ex.getResponseBody()) {
      out.write(bytes);
    }
  }

  /**
   * The answer of work done under a GARBAGE, DROP or SLOW fault: kept while the route runs (under
   * the engine's locks), sent the faulty way by {@link #finish} once it has returned.
   */
  final class Late implements Reply {
    private final HttpExchange ex;
    private final RouteFault fault;
    private int status;
    private JsonNode body;

    Late(HttpExchange ex, RouteFault fault) {
      this.ex = ex;
      this.fault = fault;
    }

    @Override
    public void send(int status, JsonNode body) {
      this.status = status;
      this.body = body;
    }

    void finish() throws IOException, InterruptedException {
      switch (fault.kind()) {
        case DROP -> ex.close(); // no status line: the caller sees the connection end
        case GARBAGE -> {
          byte[] garbage = "<html>502 Bad Gateway".getBytes(StandardCharsets.UTF_8);
          ex.sendResponseHeaders(200, garbage.length);
          try (OutputStream out = ex.getResponseBody()) {
            out.write(garbage);
          }
        }
        default -> { // SLOW: the work is done; the answer comes late
          Thread.sleep(fault.millis());
          json(ex, status, body);
        }
      }
    }
  }
}
