package dev.weightsync.server;

import static org.assertj.core.api.Assertions.assertThat;

import dev.weightsync.core.quant.Format;
import dev.weightsync.server.engine.EngineOutcome;
import dev.weightsync.server.engine.EngineResult;
import java.util.List;
import org.junit.jupiter.api.Test;

class ProtoMappingTest {

  @Test
  void everyOutcomeGoesOverTheWireAndBack() {
    for (EngineOutcome o : EngineOutcome.values()) {
      assertThat(ProtoMapping.outcome(ProtoMapping.outcome(o))).isEqualTo(o);
    }
    assertThat(ProtoMapping.outcome(dev.weightsync.proto.v1.EngineOutcome.UNRECOGNIZED)).isNull();
  }

  @Test
  void everyFormatHasItsWireName() {
    for (Format f : Format.values()) {
      assertThat(ProtoMapping.format(f).name()).isEqualTo(f.name());
    }
  }

  @Test
  void aRelayTargetsResultCarriesTheEnginesBehindIt() {
    EngineResult behind = new EngineResult("e2", EngineOutcome.FAILED_PAUSED, "", "load", 1, "load");
    EngineResult r = new EngineResult("relay", EngineOutcome.FAILED_PAUSED, "v1", "one failed", 2,
        "relay", List.of(behind));
    dev.weightsync.proto.v1.EngineResult p = ProtoMapping.engineResult(r);
    assertThat(p.getEngine()).isEqualTo("relay");
    assertThat(p.getLoadedVersion()).isEqualTo("v1");
    assertThat(p.getEnginesList()).singleElement().satisfies(e -> {
      assertThat(e.getEngine()).isEqualTo("e2");
      assertThat(e.getOutcome()).isEqualTo(dev.weightsync.proto.v1.EngineOutcome.FAILED_PAUSED);
    });
  }
}
