package dev.weightsync.cli;

import dev.weightsync.proto.v1.EngineResult;
import dev.weightsync.proto.v1.UpdateWeightsResponse;
import java.util.Locale;

/** Human-readable renderings of responses. */
final class Reports {
  private Reports() {}

  static String response(UpdateWeightsResponse r) {
    StringBuilder b = new StringBuilder();
    var t = r.getTimings();
    b.append(String.format(Locale.ROOT,
        "version %s: %d tensors in (%s), %d out (%s), staged at %s%n", r.getWeightVersion(),
        r.getTensorsIn(), ByteSizeConverter.format(r.getBytesIn()), r.getTensorsOut(),
        ByteSizeConverter.format(r.getBytesOut()), r.getStagedPath()));
    b.append(String.format(Locale.ROOT,
        "timings: receive %.3f s (quantize %.3f s within it), stage %.3f s, engine %.3f s, total %.3f s%n",
        t.getReceiveSeconds(), t.getQuantizeSeconds(), t.getStageSeconds(), t.getEngineSeconds(),
        t.getTotalSeconds()));
    b.append(String.format(Locale.ROOT, "quantization error: max abs %.4g, rel RMS %.4g%n",
        r.getQuantizationError().getMaxAbs(), r.getQuantizationError().getRelRms()));
    engines(b, r.getEnginesList(), "");
    return b.toString();
  }

  /** One line per engine; the engines behind a relay target indented under it. */
  private static void engines(StringBuilder b, java.util.List<EngineResult> engines, String indent) {
    for (EngineResult e : engines) {
      boolean relay = e.getEnginesCount() > 0;
      b.append(String.format(Locale.ROOT, "%s%s %s: %s, serving '%s' (%.3f s)%s%n", indent,
          relay ? "relay" : "engine", e.getEngine(), e.getOutcome(), e.getLoadedVersion(),
          e.getSeconds(), e.getMessage().isEmpty() ? "" : ": " + e.getMessage()));
      engines(b, e.getEnginesList(), indent + "  ");
    }
  }
}
