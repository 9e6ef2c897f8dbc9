package dev.weightsync.it;

import static org.assertj.core.api.Assertions.assertThat;

import dev.weightsync.core.quant.Bf16;
import dev.weightsync.core.safetensors.SafetensorsWriter;
import dev.weightsync.core.tensor.DType;
import dev.weightsync.core.tensor.TensorSpec;
import dev.weightsync.proto.v1.UpdateWeightsRequest;
import io.grpc.Status;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Chunks cut anywhere (mid-element, mid-row, across the sidecar's 16 MiB quantization bands) and
 * sent out of order still give the bytes `convert` writes for the same checkpoint, FP8 and INT4:
 * the sidecar quantizes each band of rows once every byte before it has arrived, and the rest
 * when the tensor completes.
 */
class ChunkingIT {

  @TempDir Path tmp;

  /** Two tensors of several bands each (a ragged last band), one of a single band, one copied. */
  private static final Map<String, long[]> MODEL = new LinkedHashMap<>();

  static {
    MODEL.put("model.layers.0.mlp.up_proj.weight", new long[] {9000, 2048});
    MODEL.put("model.layers.0.self_attn.q_proj.weight", new long[] {300, 256});
    MODEL.put("model.layers.0.mlp.down_proj.weight", new long[] {2048, 4200});
    MODEL.put("model.norm.weight", new long[] {2048});
  }

  private final Map<String, byte[]> weights = new LinkedHashMap<>();

  private Path writeCheckpoint() throws Exception {
    Path dir = Files.createDirectories(tmp.resolve("bf16"));
    Files.copy(Launcher.golden("bf16").resolve("config.json"), dir.resolve("config.json"));
    List<TensorSpec> specs = new ArrayList<>();
    Random r = new Random(7);
    for (var e : MODEL.entrySet()) {
      TensorSpec spec = TensorSpec.of(e.getKey(), DType.BF16, e.getValue());
      specs.add(spec);
      ByteBuffer b = ByteBuffer.allocate((int) spec.byteLength()).order(ByteOrder.LITTLE_ENDIAN);
      while (b.hasRemaining()) {
        b.putShort(Bf16.fromFloat((float) (r.nextGaussian() * 0.02)));
      }
      weights.put(e.getKey(), b.array());
    }
    try (SafetensorsWriter w = SafetensorsWriter.create(dir.resolve("model.safetensors"), specs,
        Map.of("format", "pt"))) {
      for (TensorSpec s : specs) {
        w.write(s.name(), 0, ByteBuffer.wrap(weights.get(s.name())));
      }
      w.finish(false);
    }
    return dir;
  }

  /**
   * Each tensor in chunks of 1 byte to 3 MiB at odd boundaries, shuffled within runs of five, so
   * the received prefix grows in fits and starts; the first chunk of the last big tensor comes
   * last of all its chunks, so its bands can only start when it completes.
   */
  private List<UpdateWeightsRequest> chunks(Random r) {
    List<UpdateWeightsRequest> out = new ArrayList<>();
    for (var e : weights.entrySet()) {
      byte[] data = e.getValue();
      List<UpdateWeightsRequest> mine = new ArrayList<>();
      for (int off = 0; off < data.length; ) {
        int n = Math.min(data.length - off, r.nextInt(10) == 0 ? 1 + r.nextInt(7)
            : 1 + r.nextInt(3 << 20));
        mine.add(RawStream.chunk(e.getKey(), "BF16", MODEL.get(e.getKey()), off,
            java.util.Arrays.copyOfRange(data, off, off + n)));
        off += n;
      }
      for (int i = 0; i < mine.size(); i += 5) {
        Collections.shuffle(mine.subList(i, Math.min(mine.size(), i + 5)), r);
      }
      if (e.getKey().contains("down_proj")) {
        mine.add(mine.remove(0));
      }
      out.addAll(mine);
    }
    return out;
  }

  private void sendAndCompare(String format, String convertFormat, String groupSize)
      throws Exception {
    Path model = writeCheckpoint();
    Path expected = tmp.resolve("expected-" + format);
    List<String> convert = new ArrayList<>(List.of("convert", "--input-dir", model.toString(),
        "--output-dir", expected.toString(), "--format", convertFormat, "--threads", "1"));
    Map<String, Object> flags = new java.util.HashMap<>(Map.of("format", format));
    if (groupSize != null) {
      convert.addAll(List.of("--group-size", groupSize));
      flags.put("group-size", Integer.parseInt(groupSize));
    }
    Launcher.Result c = Launcher.weightsync(convert.toArray(String[]::new));
    assertThat(c.exitCode()).as(c.stderr()).isZero();
    try (SidecarHarness h = new SidecarHarness(tmp.resolve("sidecar-" + format), flags);
        RawStream raw = new RawStream(h.sidecar.port())) {
      Random r = new Random(format.hashCode());
      List<UpdateWeightsRequest> messages = new ArrayList<>();
      messages.add(RawStream.header("chunky", 0, 1));
      messages.addAll(chunks(r));
      long bytes = weights.values().stream().mapToLong(b -> b.length).sum();
      messages.add(RawStream.commit(weights.size(), bytes));
      Status s = raw.send(messages, true, false);
      assertThat(s.isOk()).as(s.toString()).isTrue();
      Launcher.Result cmp = Launcher.compare(expected, h.staging.resolve("chunky"));
      assertThat(cmp.exitCode()).as(cmp.stdout()).isZero();

      // A NaN in the second band of the big tensor: reported at its index in the whole tensor.
      String big = "model.layers.0.mlp.up_proj.weight";
      long index = 5000L * 2048 + 17;
      weights.get(big)[(int) index * 2] = (byte) 0xC0;
      weights.get(big)[(int) index * 2 + 1] = (byte) 0x7F;
      messages = new ArrayList<>();
      messages.add(RawStream.header("chunky-nan", 0, 1));
      messages.addAll(chunks(r));
      messages.add(RawStream.commit(weights.size(), bytes));
      s = raw.send(messages, true, false);
      assertThat(s.getCode()).isEqualTo(Status.Code.INVALID_ARGUMENT);
      assertThat(s.getDescription()).contains(big, "element " + index);
      assertThat(h.stagedVersions()).containsExactly("chunky");
    }
  }

  @Test
  void theCrcCheckIsOnUnlessTheHeaderTurnsItOff() throws Exception {
    try (SidecarHarness h = new SidecarHarness(tmp, Map.of("format", "fp8-block"));
        RawStream raw = new RawStream(h.sidecar.port())) {
      long[] shape = {128, 128};
      byte[] data = new byte[128 * 128 * 2];
      java.util.function.BiFunction<String, String, List<UpdateWeightsRequest>> part =
          (version, crcOption) -> {
            var header = dev.weightsync.proto.v1.Header.newBuilder().setWeightVersion(version);
            if (crcOption != null) {
              header.putOptions("crc32c", crcOption);
            }
            return List.of(UpdateWeightsRequest.newBuilder().setHeader(header).build(),
                RawStream.chunkWithCrc("model.layers.0.mlp.up_proj.weight", "BF16", shape, 0,
                    data, 12345),
                RawStream.commit(1, data.length));
          };
      Status checked = raw.send(part.apply("crc-on", null), true, false);
      assertThat(checked.getCode()).isEqualTo(Status.Code.INVALID_ARGUMENT);
      assertThat(checked.getDescription()).contains("CRC32C");
      assertThat(raw.send(part.apply("crc-off", "off"), true, false).isOk()).isTrue();
      Status bad = raw.send(part.apply("crc-what", "maybe"), true, false);
      assertThat(bad.getDescription()).contains("crc32c must be on or off");
      assertThat(h.stagedVersions()).containsExactly("crc-off");
    }
  }

  @Test
  void fp8FromOddOutOfOrderChunksEqualsConvert() throws Exception {
    sendAndCompare("fp8-block", "fp8-block", null);
  }

  @Test
  void int4FromOddOutOfOrderChunksEqualsConvert() throws Exception {
    sendAndCompare("int4-group", "int4-group", "32");
  }
}
