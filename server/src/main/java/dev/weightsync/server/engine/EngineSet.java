package dev.weightsync.server.engine;

import java.io.IOException;
import java.util.List;

/**
 * The engines a sidecar delivers to. Fixed for SGLang URLs; for relay targets given as
 * {@code dns:///} names, looked up again for every version.
 */
public interface EngineSet {

  /** The engines to deliver the next version to. */
  List<EngineAdapter> forVersion() throws IOException;

  /** The engines known now (for status and readiness), without a lookup. */
  List<EngineAdapter> known();

  static EngineSet of(List<EngineAdapter> engines) {
    List<EngineAdapter> fixed = List.copyOf(engines);
    return new EngineSet() {
      @Override
      public List<EngineAdapter> forVersion() {
        return fixed;
      }

      @Override
      public List<EngineAdapter> known() {
        return fixed;
      }
    };
  }
}
