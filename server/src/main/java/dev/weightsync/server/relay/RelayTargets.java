package dev.weightsync.server.relay;

import dev.weightsync.client.ClientTls;
import dev.weightsync.server.config.RelayTarget;
import dev.weightsync.server.engine.EngineAdapter;
import dev.weightsync.server.engine.EngineSet;
import java.io.IOException;
import java.net.UnknownHostException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.logging.Logger;

/**
 * The engine-side sidecars a trainer-side sidecar relays to: {@code relay-to} targets resolved
 * for every version ({@code dns:///} names to every address, so pods that came or went behind a
 * headless Service are found). One {@link RelayAdapter} (one channel) per address, kept across
 * versions so that its state — out of date, unreachable — carries over; adapters of addresses
 * that disappeared are closed. Each adapter opens {@code streams} connections to its address.
 */
public final class RelayTargets implements EngineSet, AutoCloseable {

  private static final Logger LOG = Logger.getLogger(RelayTargets.class.getName());

  private final List<RelayTarget> targets;
  private final String token;
  private final ClientTls tls;
  private final int streams;
  private final Map<String, RelayAdapter> adapters = new LinkedHashMap<>();
  private List<EngineAdapter> known;

  /**
   * @param tls null to relay in plaintext
   * @param streams connections (and sub-parts) each part goes over to each target
   */
  public RelayTargets(List<RelayTarget> targets, String token, ClientTls tls, int streams) {
    this.targets = List.copyOf(targets);
    this.token = token;
    this.tls = tls;
    this.streams = streams;
    List<EngineAdapter> initial = new ArrayList<>();
    for (RelayTarget t : targets) {
      if (!t.everyAddress()) { // names are looked up per version; plain targets are known now
        initial.add(adapters.computeIfAbsent(t.host() + ":" + t.port(),
            a -> new RelayAdapter(a, token, tls, streams)));
      }
    }
    this.known = List.copyOf(initial);
  }

  @Override
  public synchronized List<EngineAdapter> forVersion() throws IOException {
    List<String> now = new ArrayList<>();
    for (RelayTarget t : targets) {
      try {
        for (String a : t.resolve()) {
          if (!now.contains(a)) {
            now.add(a);
          }
        }
      } catch (UnknownHostException e) {
        throw new UnknownHostException("relay target " + t + " does not resolve: "
            + e.getMessage());
      }
    }
    for (String gone : new ArrayList<>(adapters.keySet())) {
      if (!now.contains(gone)) {
        LOG.info("relay target " + gone + " is gone from DNS; closing its channel");
        adapters.remove(gone).close();
      }
    }
    List<EngineAdapter> out = new ArrayList<>();
    for (String a : now) {
      out.add(adapters.computeIfAbsent(a, x -> new RelayAdapter(x, token, tls, streams)));
    }
    known = List.copyOf(out);
    return known;
  }

  @Override
  public synchronized List<EngineAdapter> known() {
    return known;
  }

  @Override
  public synchronized void close() {
    adapters.values().forEach(RelayAdapter::close);
    adapters.clear();
  }
}
