package dev.weightsync.core.quant;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.weightsync.core.tensor.DType;
import dev.weightsync.core.tensor.TensorSpec;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.Test;

class TensorSelectorTest {

  private static TensorSpec w(String name, long... shape) {
    return TensorSpec.of(name, DType.BF16, shape);
  }

  @Test
  void fp8RulesKeepNormsEmbeddingsAndTheRouterGateOut() {
    TensorSelector s = new TensorSelector(QuantScheme.of(Format.FP8_BLOCK, null));
    assertThat(s.plan(w("model.layers.0.mlp.gate_up_proj.weight", 256, 256)))
        .isInstanceOf(TensorPlan.Fp8Block.class);
    assertThat(s.plan(w("model.layers.0.mlp.gate.weight", 4, 256)))
        .isInstanceOf(TensorPlan.PassThrough.class);
    assertThat(s.plan(w("model.embed_tokens.weight", 10, 256)))
        .isInstanceOf(TensorPlan.PassThrough.class);
    assertThat(s.plan(w("lm_head.weight", 10, 256))).isInstanceOf(TensorPlan.PassThrough.class);
    assertThat(s.plan(w("model.layers.0.self_attn.q_proj.bias", 256)))
        .isInstanceOf(TensorPlan.PassThrough.class);
    assertThat(s.plan(TensorSpec.of("x.weight", DType.I32, 4, 4)))
        .isInstanceOf(TensorPlan.PassThrough.class);
  }

  @Test
  void fp8ModulesToNotConvertComeFromTheEngineConfig() throws Exception {
    var config = new ObjectMapper().readTree("{\"quantization_config\":{\"quant_method\":\"fp8\","
        + "\"weight_block_size\":[128,128],\"modules_to_not_convert\":[\"model.layers.0.self_attn.o_proj\"],"
        + "\"ignored_layers\":[\"model.layers.1.mlp.down_proj\"]}}");
    TensorSelector s = new TensorSelector(QuantScheme.resolve(null, null, config));
    assertThat(s.plan(w("model.layers.0.self_attn.o_proj.weight", 256, 256)))
        .isInstanceOf(TensorPlan.PassThrough.class);
    assertThat(s.plan(w("model.layers.1.mlp.down_proj.weight", 256, 256)))
        .isInstanceOf(TensorPlan.PassThrough.class);
    assertThat(s.plan(w("model.layers.0.self_attn.q_proj.weight", 256, 256)))
        .isInstanceOf(TensorPlan.Fp8Block.class);
  }

  @Test
  void int4PrefixRulesStopAtADot() {
    QuantScheme scheme = new QuantScheme(Format.INT4_GROUP, 32, Set.of(),
        List.of("model.layers.1", "re:lm_head"));
    TensorSelector s = new TensorSelector(scheme);
    assertThat(s.plan(w("model.layers.1.mlp.up_proj.weight", 64, 64)))
        .isInstanceOf(TensorPlan.PassThrough.class);
    assertThat(s.plan(w("model.layers.10.mlp.up_proj.weight", 64, 64)))
        .isInstanceOf(TensorPlan.Int4Group.class);
    assertThat(s.plan(w("lm_head.weight", 64, 64))).isInstanceOf(TensorPlan.PassThrough.class);
    // re: rules match at the start only (Python re.match)
    assertThat(s.plan(w("x.lm_head_not.weight", 64, 64))).isInstanceOf(TensorPlan.Int4Group.class);
  }

  @Test
  void int4DefaultIgnoreQuantizesOnlyRoutedExperts() {
    TensorSelector s = new TensorSelector(QuantScheme.of(Format.INT4_GROUP, null));
    assertThat(s.plan(w("model.layers.0.mlp.experts.3.gate_proj.weight", 384, 256)))
        .isInstanceOf(TensorPlan.Int4Group.class);
    assertThat(s.plan(w("model.layers.0.mlp.shared_experts.gate_proj.weight", 384, 256)))
        .isInstanceOf(TensorPlan.PassThrough.class);
    assertThat(s.plan(w("model.layers.1.mlp.gate_up_proj.weight", 384, 256)))
        .isInstanceOf(TensorPlan.PassThrough.class);
    assertThat(s.plan(w("model.layers.0.self_attn.q_proj.weight", 256, 256)))
        .isInstanceOf(TensorPlan.PassThrough.class);
  }

  @Test
  void int4RowsNotAMultipleOfTheGroupStayAndJoinTheIgnoreList() {
    QuantScheme scheme = QuantScheme.of(Format.INT4_GROUP, 128);
    TensorSelector s = new TensorSelector(scheme);
    TensorPlan p = s.plan(w("model.layers.0.mlp.experts.0.down_proj.weight", 256, 300));
    assertThat(p).isEqualTo(new TensorPlan.PassThrough(p.input(), true));
    var qc = QuantizationConfigs.build(scheme, List.of(p));
    var ignore = qc.get("ignore");
    assertThat(ignore.get(ignore.size() - 1).asText())
        .isEqualTo("model.layers.0.mlp.experts.0.down_proj");
  }

  @Test
  void conflictingOptionsAndUnsupportedConfigsAreClearErrors() throws Exception {
    ObjectMapper json = new ObjectMapper();
    var fp8 = json.readTree("{\"quant_method\":\"fp8\",\"weight_block_size\":[128,128]}");
    assertThatThrownBy(() -> QuantScheme.resolve(Format.INT4_GROUP, null, fp8))
        .hasMessageContaining("disagrees");
    var int4 = json.readTree("{\"quant_method\":\"compressed-tensors\",\"format\":\"pack-quantized\","
        + "\"config_groups\":{\"g\":{\"weights\":{\"num_bits\":4,\"type\":\"int\",\"strategy\":\"group\","
        + "\"symmetric\":true,\"group_size\":32}}}}");
    assertThat(QuantScheme.resolve(null, 32, int4).groupSize()).isEqualTo(32);
    assertThatThrownBy(() -> QuantScheme.resolve(null, 128, int4)).hasMessageContaining("group_size 32");
    var blocks64 = json.readTree("{\"quant_method\":\"fp8\",\"weight_block_size\":[64,64]}");
    assertThatThrownBy(() -> QuantScheme.fromConfig(blocks64)).hasMessageContaining("128x128");
    assertThatThrownBy(() -> QuantScheme.fromConfig(json.readTree("{\"quant_method\":\"awq\"}")))
        .hasMessageContaining("unsupported quant_method 'awq'");
    assertThatThrownBy(() -> QuantScheme.of(Format.INT4_GROUP, 12)).hasMessageContaining("multiple of 8");
    assertThatThrownBy(() -> QuantScheme.of(Format.FP8_BLOCK, 128)).hasMessageContaining("int4-group only");
  }
}
