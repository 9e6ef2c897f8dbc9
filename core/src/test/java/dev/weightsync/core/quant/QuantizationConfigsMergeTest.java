package dev.weightsync.core.quant;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.weightsync.core.tensor.DType;
import dev.weightsync.core.tensor.TensorSpec;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;

/** Parts quantized apart (relayed by several senders) make the config of the whole. */
class QuantizationConfigsMergeTest {

  private static TensorPlan plan(TensorSelector s, String name, long... shape) {
    return s.plan(TensorSpec.of(name, DType.BF16, shape));
  }

  @Test
  void thePartsConfigsJoinToTheConfigOfTheWholeVersion() {
    for (QuantScheme scheme : List.of(QuantScheme.of(Format.FP8_BLOCK, null),
        QuantScheme.of(Format.INT4_GROUP, 128))) {
      TensorSelector s = new TensorSelector(scheme);
      List<TensorPlan> a = List.of(plan(s, "model.layers.0.mlp.up_proj.weight", 256, 256),
          plan(s, "lm_head.weight", 256, 256), plan(s, "model.layers.0.mlp.gate.weight", 8, 256));
      List<TensorPlan> b = List.of(plan(s, "model.layers.1.mlp.up_proj.weight", 256, 200),
          plan(s, "model.embed_tokens.weight", 512, 256));
      ObjectNode whole = QuantizationConfigs.build(scheme,
          java.util.stream.Stream.concat(a.stream(), b.stream()).toList());
      ObjectNode merged = QuantizationConfigs.merge(
          Arrays.asList(QuantizationConfigs.build(scheme, a), QuantizationConfigs.build(scheme, b)));
      assertThat(merged).as(scheme.format().name()).isEqualTo(whole);
    }
  }

  @Test
  void disagreementsAreRefusedNamingTheField() throws Exception {
    ObjectMapper json = new ObjectMapper();
    ObjectNode fp8 = (ObjectNode) json.readTree(
        "{\"quant_method\":\"fp8\",\"weight_block_size\":[128,128],\"modules_to_not_convert\":[]}");
    ObjectNode other = fp8.deepCopy().put("quant_method", "compressed-tensors");
    assertThatThrownBy(() -> QuantizationConfigs.merge(List.of(fp8, other)))
        .hasMessageContaining("quantization_config.quant_method");
    assertThatThrownBy(() -> QuantizationConfigs.merge(Arrays.asList(fp8, null)))
        .hasMessageContaining("some parts are quantized and some are not");
    ObjectNode missing = fp8.deepCopy();
    missing.remove("weight_block_size");
    assertThatThrownBy(() -> QuantizationConfigs.merge(List.of(fp8, missing)))
        .hasMessageContaining("weight_block_size");
    assertThat(QuantizationConfigs.merge(Arrays.asList(null, null))).isNull();
  }
}
