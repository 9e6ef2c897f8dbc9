package dev.weightsync.cli.engine;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.util.Map;

/** The routes of one engine's API ({@link SglangRoutes}, {@link VllmRoutes}) over the stand-in's state. */
interface EngineRoutes {

  /** Answers one call into {@code ex}; the query string's parameters in {@code query}. */
  void route(Reply ex, String route, Map<String, String> query, JsonNode body)
      throws IOException, InterruptedException;

  /** Whether {@code route} loads weights (a refusal of it may leave a part applied). */
  boolean loads(String route);
}
