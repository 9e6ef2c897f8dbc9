package dev.weightsync.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.weightsync.core.checkpoint.CheckpointWriter;
import dev.weightsync.core.quant.Bf16;
import dev.weightsync.core.tensor.DType;
import dev.weightsync.core.tensor.TensorSpec;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/** Writes a small random BF16 model in Hugging Face layout (Qwen-like names), for the demo. */
final class DemoModel {
  private DemoModel() {}

  static List<TensorSpec> tensors(int layers, int hidden, int intermediate, int vocab) {
    List<TensorSpec> t = new ArrayList<>();
    t.add(TensorSpec.of("model.embed_tokens.weight", DType.BF16, vocab, hidden));
    for (int l = 0; l < layers; l++) {
      String p = "model.layers." + l + ".";
      t.add(TensorSpec.of(p + "input_layernorm.weight", DType.BF16, hidden));
      for (String proj : new String[] {"q_proj", "k_proj", "v_proj", "o_proj"}) {
        t.add(TensorSpec.of(p + "self_attn." + proj + ".weight", DType.BF16, hidden, hidden));
      }
      t.add(TensorSpec.of(p + "post_attention_layernorm.weight", DType.BF16, hidden));
      t.add(TensorSpec.of(p + "mlp.gate_proj.weight", DType.BF16, intermediate, hidden));
      t.add(TensorSpec.of(p + "mlp.up_proj.weight", DType.BF16, intermediate, hidden));
      t.add(TensorSpec.of(p + "mlp.down_proj.weight", DType.BF16, hidden, intermediate));
    }
    t.add(TensorSpec.of("model.norm.weight", DType.BF16, hidden));
    t.add(TensorSpec.of("lm_head.weight", DType.BF16, vocab, hidden));
    return t;
  }

  static void write(Path dir, List<TensorSpec> tensors, long seed) throws IOException {
    SplittableRandom r = new SplittableRandom(seed);
    try (CheckpointWriter w = new CheckpointWriter(dir, tensors, 16L << 20)) {
      for (TensorSpec t : tensors) {
        ByteBuffer b = ByteBuffer.allocate((int) t.byteLength()).order(ByteOrder.LITTLE_ENDIAN);
        boolean norm = t.rank() == 1;
        while (b.hasRemaining()) {
          b.putShort(Bf16.fromFloat(norm ? 1f : (float) (r.nextDouble(-1, 1) * 0.04)));
        }
        w.write(t.name(), 0, b.flip());
      }
      ObjectNode config = new ObjectMapper().createObjectNode()
          .put("model_type", "qwen3").put("torch_dtype", "bfloat16");
      w.finish(config, false);
    }
  }
}
