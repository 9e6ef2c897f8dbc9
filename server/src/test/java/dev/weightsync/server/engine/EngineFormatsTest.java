package dev.weightsync.server.engine;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.weightsync.core.quant.Format;
import dev.weightsync.core.quant.QuantScheme;
import dev.weightsync.server.engine.EngineFormats.Engine;
import java.util.List;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.Test;

class EngineFormatsTest {

  @ParameterizedTest
  @EnumSource(Engine.class)
  void everyFp8AndBf16FormatAndTheMarlinGroupSizesAreServed(Engine engine) {
    for (Format f : List.of(Format.FP8_BLOCK, Format.FP8_BLOCK_UE8M0, Format.BF16)) {
      assertThat(EngineFormats.refusal(engine, QuantScheme.of(f, null))).as(f.id()).isEmpty();
    }
    for (int g : new int[] {32, 64, 128}) {
      assertThat(EngineFormats.refusal(engine, QuantScheme.of(Format.INT4_GROUP, g)))
          .as("group " + g).isEmpty();
    }
  }

  @ParameterizedTest
  @ValueSource(ints = {8, 16, 48, 96, 256, 1024})
  void int4GroupSizesNoKernelTakesAreRefusedNamingEngineAndFormat(int group) {
    QuantScheme scheme = QuantScheme.of(Format.INT4_GROUP, group);
    assertThat(EngineFormats.refusal(Engine.SGLANG, scheme)).get().asString()
        .startsWith("SGLang cannot serve int4-group with group size " + group)
        .contains("Marlin", "32, 64 or 128");
    assertThat(EngineFormats.refusal(Engine.VLLM, scheme)).get().asString()
        .startsWith("vLLM cannot serve int4-group with group size " + group)
        .contains("Machete", "32, 64 or 128");
  }

  @Test
  void theCheckNamesTheConfiguredEngineAndOnlyConfiguredEnginesCount() {
    QuantScheme g256 = QuantScheme.of(Format.INT4_GROUP, 256);
    EngineFormats.check(g256, List.of(), List.of());
    assertThatThrownBy(() -> EngineFormats.check(g256, List.of(), List.of("http://v:8000")))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageStartingWith("vLLM cannot serve int4-group with group size 256")
        .hasMessageEndingWith("[vllm-url http://v:8000]");
    assertThatThrownBy(() -> EngineFormats.check(g256, List.of("http://s:30000"), List.of()))
        .hasMessageStartingWith("SGLang cannot serve")
        .hasMessageEndingWith("[sglang-url http://s:30000]");
    EngineFormats.check(QuantScheme.of(Format.INT4_GROUP, 64), List.of("http://s:30000"),
        List.of("http://v:8000"));
  }
}
