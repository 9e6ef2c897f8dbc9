package dev.weightsync.server;

import dev.weightsync.core.quant.Format;
import dev.weightsync.server.engine.EngineOutcome;
import dev.weightsync.server.engine.EngineResult;

/**
 * The one mapping between the wire's types ({@code dev.weightsync.proto.v1}) and the domain's of
 * the same name: formats and engine outcomes. The domain types stay free of protobuf; the wire's
 * keep their numbers for compatibility.
 */
public final class ProtoMapping {

  private ProtoMapping() {
  }

  /** The wire's name for a format. */
  public static dev.weightsync.proto.v1.Format format(Format f) {
    return switch (f) {
      case FP8_BLOCK -> dev.weightsync.proto.v1.Format.FP8_BLOCK;
      case FP8_BLOCK_UE8M0 -> dev.weightsync.proto.v1.Format.FP8_BLOCK_UE8M0;
      case INT4_GROUP -> dev.weightsync.proto.v1.Format.INT4_GROUP;
      case BF16 -> dev.weightsync.proto.v1.Format.BF16;
    };
  }

  /** An engine's result as the caller receives it, with the engines behind a relay target. */
  public static dev.weightsync.proto.v1.EngineResult engineResult(EngineResult e) {
    dev.weightsync.proto.v1.EngineResult.Builder b = dev.weightsync.proto.v1.EngineResult
        .newBuilder()
        .setEngine(e.engine())
        .setOutcome(outcome(e.outcome()))
        .setLoadedVersion(e.loadedVersion())
        .setMessage(e.message())
        .setSeconds(e.seconds());
    e.engines().forEach(behind -> b.addEngines(engineResult(behind)));
    return b.build();
  }

  public static dev.weightsync.proto.v1.EngineOutcome outcome(EngineOutcome o) {
    return switch (o) {
      case LOADED -> dev.weightsync.proto.v1.EngineOutcome.LOADED;
      case FAILED_UNTOUCHED -> dev.weightsync.proto.v1.EngineOutcome.FAILED_UNTOUCHED;
      case FAILED_PAUSED -> dev.weightsync.proto.v1.EngineOutcome.FAILED_PAUSED;
      case FAILED_RESUMED -> dev.weightsync.proto.v1.EngineOutcome.FAILED_RESUMED;
    };
  }

  /** The domain's outcome for a wire outcome; null for one this build does not know (newer). */
  public static EngineOutcome outcome(dev.weightsync.proto.v1.EngineOutcome o) {
    return switch (o) {
      case LOADED -> EngineOutcome.LOADED;
      case FAILED_UNTOUCHED -> EngineOutcome.FAILED_UNTOUCHED;
      case FAILED_PAUSED -> EngineOutcome.FAILED_PAUSED;
      case FAILED_RESUMED -> EngineOutcome.FAILED_RESUMED;
      default -> null;
    };
  }
}
