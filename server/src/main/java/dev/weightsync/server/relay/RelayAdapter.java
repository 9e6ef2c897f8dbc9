package dev.weightsync.server.relay;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.weightsync.client.ClientTls;
import dev.weightsync.client.Tensor;
import dev.weightsync.client.WeightSyncClient;
import dev.weightsync.core.checkpoint.CheckpointFolder;
import dev.weightsync.core.tensor.TensorSpec;
import dev.weightsync.proto.v1.Header;
import dev.weightsync.proto.v1.Payload;
import dev.weightsync.proto.v1.UpdateWeightsResponse;
import dev.weightsync.server.ProtoMapping;
import dev.weightsync.server.engine.Delivery;
import dev.weightsync.server.engine.EngineAdapter;
import dev.weightsync.server.engine.EngineOutcome;
import dev.weightsync.server.engine.EngineResult;
import dev.weightsync.server.engine.EngineState;
import io.grpc.StatusRuntimeException;
import java.io.IOException;
import java.nio.file.Files;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

/**
 * Relays a part quantized on this (trainer-side) sidecar to one engine-side sidecar: the staged
 * part's tensors (FP8/INT4 bytes and scales, read from the staged files in 4 MiB chunks under
 * gRPC flow control) with its {@code quantization_config}, as {@code PAYLOAD_QUANTIZED}, split
 * into {@code streams} sub-parts that go over a connection each (one connection's event loop
 * tops out near one core). The engine-side sidecar answers once the whole version (every
 * sender's part, every sub-part of each) reached its engines; its engines' results become this
 * target's result.
 */
public final class RelayAdapter implements EngineAdapter, AutoCloseable {

  private static final ObjectMapper JSON = new ObjectMapper();
  /** Tries per part while the engine-side sidecar is UNAVAILABLE (e.g. restarting): ~6 s. */
  static final int ATTEMPTS = 6;
  /**
   * Relay streams a version may hold open at one target: half of an engine-side sidecar's
   * default share per caller (max-streams-per-caller 64), since every part of the version this
   * sidecar relays comes from the same caller there.
   */
  static final int STREAM_BUDGET = 32;

  private final String authority;
  private final int streams;
  private final WeightSyncClient client;
  private volatile EngineState state;

  /**
   * @param streams connections (and sub-parts) each part goes over
   * @param tls null for plaintext
   * @throws java.io.UncheckedIOException when a TLS file cannot be read
   */
  public RelayAdapter(String authority, String token, ClientTls tls, int streams) {
    this.authority = authority;
    this.streams = streams;
    try {
      this.client = WeightSyncClient.connect(authority, token, ATTEMPTS, tls);
    } catch (IOException e) {
      throw new java.io.UncheckedIOException("relay to " + authority + ": " + e.getMessage(), e);
    }
    this.state = new EngineState(authority, EngineState.UNKNOWN, "", "");
  }

  @Override
  public String name() {
    return authority;
  }

  @Override
  public EngineState state() {
    return state;
  }

  @Override
  public boolean healthy() {
    return client.reachable(Duration.ofSeconds(2));
  }

  @Override
  public EngineResult update(Delivery d) {
    long start = System.nanoTime();
    try (CheckpointFolder part = CheckpointFolder.open(d.folder())) {
      List<Tensor> tensors = new ArrayList<>();
      for (TensorSpec t : part.tensors()) {
        tensors.add(new Tensor(t, part.source(t.name())));
      }
      JsonNode qc = JSON.readTree(Files.readString(d.folder().resolve(CheckpointFolder.CONFIG_FILE)))
          .get("quantization_config");
      Header header = Header.newBuilder().setWeightVersion(d.version())
          .setPartIndex(d.partIndex()).setPartCount(d.partCount())
          .setPayload(Payload.PAYLOAD_QUANTIZED)
          .setQuantizationConfigJson(qc == null || qc.isNull() ? "" : JSON.writeValueAsString(qc))
          .build();
      return fromResponse(d.version(), client.pushSplit(header, tensors,
          subParts(streams, d.partCount())), start);
    } catch (StatusRuntimeException e) {
      return failed(d, start, "relay to " + authority + " failed: " + e.getStatus().getCode()
          + (e.getStatus().getDescription() == null ? "" : " " + e.getStatus().getDescription()));
    } catch (IOException | RuntimeException e) {
      return failed(d, start, "relay to " + authority + " failed: " + e);
    }
  }

  /**
   * Sub-parts for one part of a version of {@code partCount} parts: {@code streams}, fewer when
   * the parts relayed at once would take more than {@link #STREAM_BUDGET} streams at the target.
   */
  static int subParts(int streams, int partCount) {
    return Math.max(1, Math.min(streams, STREAM_BUDGET / Math.max(1, partCount)));
  }

  /** The engine-side sidecar's answer: LOADED when every engine behind it loaded the version. */
  private EngineResult fromResponse(String version, UpdateWeightsResponse r, long start) {
    List<EngineResult> behind = new ArrayList<>();
    for (dev.weightsync.proto.v1.EngineResult e : r.getEnginesList()) {
      // each outcome as it is; one this sidecar does not know (a newer engine-side sidecar) is
      // not taken for "untouched": the engine may be paused, and the message says so
      EngineOutcome known = ProtoMapping.outcome(e.getOutcome());
      EngineOutcome outcome = known != null ? known : EngineOutcome.FAILED_PAUSED;
      String message = known == null
          ? "unrecognized outcome " + e.getOutcomeValue() + " from the engine-side sidecar: "
              + e.getMessage()
          : e.getMessage();
      behind.add(new EngineResult(e.getEngine(), outcome, e.getLoadedVersion(), message,
          e.getSeconds(), ""));
    }
    EngineOutcome worst = EngineOutcome.LOADED;
    for (EngineResult e : behind) {
      worst = worse(worst, e.outcome());
    }
    double seconds = (System.nanoTime() - start) / 1e9;
    if (worst == EngineOutcome.LOADED) {
      state = new EngineState(authority, EngineState.SERVING, version, "");
      return new EngineResult(authority, worst, version, "", seconds, "", behind);
    }
    String message = behind.stream().filter(e -> e.outcome() != EngineOutcome.LOADED)
        .map(e -> e.engine() + " " + e.outcome() + ": " + e.message()).toList().toString();
    state = new EngineState(authority, EngineState.UNKNOWN, state.loadedVersion(), message);
    return new EngineResult(authority, worst, state.loadedVersion(), message, seconds, "engine",
        behind);
  }

  /** A paused engine is the worst news, then one resumed after a failure, then one untouched. */
  private static EngineOutcome worse(EngineOutcome a, EngineOutcome b) {
    List<EngineOutcome> order = List.of(EngineOutcome.LOADED, EngineOutcome.FAILED_UNTOUCHED,
        EngineOutcome.FAILED_RESUMED, EngineOutcome.FAILED_PAUSED);
    return order.indexOf(b) > order.indexOf(a) ? b : a;
  }

  private EngineResult failed(Delivery d, long start, String message) {
    state = new EngineState(authority, EngineState.UNREACHABLE, state.loadedVersion(), message);
    return new EngineResult(authority, EngineOutcome.FAILED_UNTOUCHED, state.loadedVersion(),
        message, (System.nanoTime() - start) / 1e9, "relay");
  }

  @Override
  public void close() {
    client.close();
  }
}
