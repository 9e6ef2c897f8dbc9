package dev.weightsync.core.checkpoint;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.weightsync.core.Golden;
import dev.weightsync.core.quant.CpuQuantizer;
import dev.weightsync.core.quant.Format;
import dev.weightsync.core.quant.QuantScheme;
import dev.weightsync.core.tensor.TensorSpec;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The four golden outputs reproduced byte for byte by the CPU path, for the repository's fixtures
 * and, where it exists, for ../shared/golden too.
 */
class GoldenConversionTest {

  @TempDir Path tmp;

  static List<Arguments> flagCases() {
    Object[][] cases = {
        {"fp8", "fp8-block", 1, null}, {"fp8", "fp8-block", 3, null},
        {"fp8_ue8m0", "fp8-block-ue8m0", 1, null}, {"fp8_ue8m0", "fp8-block-ue8m0", 4, null},
        {"int4_g128", "int4-group", 1, 128}, {"int4_g128", "int4-group", 2, 128},
        {"int4_g32", "int4-group", 1, 32}, {"int4_g32", "int4-group", 3, 32}};
    List<Arguments> out = new ArrayList<>();
    for (Path root : Golden.roots()) {
      for (Object[] c : cases) {
        out.add(Arguments.of(root, c[0], c[1], c[2], c[3]));
      }
    }
    return out;
  }

  static List<Arguments> configCases() {
    List<Arguments> out = new ArrayList<>();
    for (Path root : Golden.roots()) {
      for (String g : List.of("fp8", "fp8_ue8m0", "int4_g128", "int4_g32")) {
        out.add(Arguments.of(root, g));
      }
    }
    return out;
  }

  @ParameterizedTest(name = "{1} with {3} thread(s) from {0}")
  @MethodSource("flagCases")
  void reproducesGoldenFromFlags(Path root, String golden, String format, int threads,
      Integer group) throws IOException {
    QuantScheme scheme = QuantScheme.of(Format.parse(format), group);
    assertConvertsTo(root, scheme, threads, Golden.folder(root, golden), 1L << 20);
  }

  @ParameterizedTest(name = "{1} from its own config.json, {0}")
  @MethodSource("configCases")
  void reproducesGoldenFromEngineConfig(Path root, String golden) throws IOException {
    Path expected = Golden.folder(root, golden);
    JsonNode config = new ObjectMapper().readTree(expected.resolve("config.json").toFile());
    QuantScheme scheme = QuantScheme.resolve(null, null, config);
    assertConvertsTo(root, scheme, 2, expected, CheckpointWriter.DEFAULT_MAX_SHARD_BYTES);
  }

  private void assertConvertsTo(Path root, QuantScheme scheme, int threads, Path expected,
      long shardBytes) throws IOException {
    Path out = tmp.resolve("out");
    try (CpuQuantizer q = new CpuQuantizer(threads)) {
      new CheckpointConverter(q, scheme, shardBytes)
          .convert(Golden.folder(root, "bf16"), out, false, null);
    }
    assertThat(CheckpointComparison.compare(expected, out).differences()).isEmpty();
    Map<String, Tensor> want = readAll(expected);
    Map<String, Tensor> got = readAll(out);
    assertThat(got.keySet()).containsExactlyElementsOf(want.keySet());
    for (String name : want.keySet()) {
      assertThat(got.get(name).spec()).as(name).isEqualTo(want.get(name).spec());
      assertThat(got.get(name).bytes()).as(name + " bytes").isEqualTo(want.get(name).bytes());
    }
    ObjectMapper json = new ObjectMapper();
    JsonNode wantConfig = json.readTree(expected.resolve("config.json").toFile());
    JsonNode gotConfig = json.readTree(out.resolve("config.json").toFile());
    assertThat(gotConfig).isEqualTo(wantConfig);
    JsonNode index = json.readTree(out.resolve("model.safetensors.index.json").toFile());
    long total = got.values().stream().mapToLong(t -> t.spec().byteLength()).sum();
    assertThat(index.get("metadata").get("total_size").asLong()).isEqualTo(total);
    assertThat(index.get("weight_map").size()).isEqualTo(got.size());
  }

  record Tensor(TensorSpec spec, byte[] bytes) {}

  static Map<String, Tensor> readAll(Path dir) throws IOException {
    Map<String, Tensor> out = new TreeMap<>();
    try (CheckpointFolder f = CheckpointFolder.open(dir)) {
      for (TensorSpec t : f.tensors()) {
        ByteBuffer b = f.source(t.name()).window(0, (int) t.byteLength());
        byte[] bytes = new byte[b.remaining()];
        b.get(bytes);
        out.put(t.name(), new Tensor(t, bytes));
      }
    }
    assertThat(Files.exists(dir.resolve("config.json"))).isTrue();
    return out;
  }
}
