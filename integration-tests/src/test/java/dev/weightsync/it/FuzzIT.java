package dev.weightsync.it;

import static org.assertj.core.api.Assertions.assertThat;

import com.google.protobuf.ByteString;
import dev.weightsync.core.quant.Bf16;
import dev.weightsync.proto.v1.Commit;
import dev.weightsync.proto.v1.Format;
import dev.weightsync.proto.v1.Header;
import dev.weightsync.proto.v1.Payload;
import dev.weightsync.proto.v1.TensorChunk;
import dev.weightsync.proto.v1.UpdateWeightsRequest;
import io.grpc.Status;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.zip.CRC32C;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Thousands of random and malformed streams (boundary field values, wrong dtypes, huge and
 * negative shapes and offsets, bad checksums, duplicate or missing headers, wrong commit counts,
 * truncation, streams that go silent, NaNs), each answered with a precise status: never UNKNOWN or INTERNAL. Nothing is
 * left in the staging folder, the engine is called exactly once per accepted version, and the
 * sidecar still loads a good version afterwards. Seeded, so a failure reproduces.
 */
class FuzzIT {

  private static final int STREAMS = 2000;
  private static final String[] DTYPES = {"BF16", "F32", "F16", "I32", "U8", "F8_E4M3", "Q4", "", "bf16", "F64"};
  private static final long[] EDGE = {0, 1, 2, 3, 7, 8, 127, 128, 129, 4096, -1, Long.MAX_VALUE,
      Long.MIN_VALUE, 1L << 31, 1L << 32, (1L << 62) + 1};

  @TempDir Path tmp;

  @Test
  void malformedStreamsGetPreciseStatusesAndLeaveNothing() throws Exception {
    SplittableRandom r = new SplittableRandom(20261128);
    Map<Status.Code, Integer> seen = new EnumMap<>(Status.Code.class);
    int accepted = 0;
    try (SidecarHarness h = new SidecarHarness(tmp, Map.of("format", "fp8-block", "part-timeout", "1s"));
        RawStream raw = new RawStream(h.sidecar.port())) {
      for (int i = 0; i < STREAMS; i++) {
        List<UpdateWeightsRequest> msgs = stream(r, i);
        Status s = raw.send(msgs, r.nextInt(200) != 0, false); // a few never half-close: idle timeout
        seen.merge(s.getCode(), 1, Integer::sum);
        assertThat(s.getCode()).as("stream %d: %s", i, s)
            .isNotIn(Status.Code.UNKNOWN, Status.Code.INTERNAL, Status.Code.UNIMPLEMENTED);
        if (s.isOk()) {
          accepted++;
        } else {
          assertThat(s.getDescription()).as("stream %d has no description", i).isNotBlank();
        }
      }
      // multi-part versions missing parts time out (part-timeout 1s): wait until none is left
      for (long end = System.nanoTime() + 30_000_000_000L;
          h.client.status().getInProgressCount() > 0; ) {
        assertThat(System.nanoTime()).as("versions still in progress").isLessThan(end);
        Thread.sleep(20);
      }
      System.out.println("fuzz: " + STREAMS + " streams, statuses " + seen);
      assertThat(h.stagingEntries()).as("leftover temporary folders").allMatch(n -> !n.startsWith("."));
      assertThat(h.engine.routes().stream().filter("/update_weights_from_disk"::equals).count())
          .isEqualTo(accepted);
      assertThat(seen.getOrDefault(Status.Code.INVALID_ARGUMENT, 0)).isGreaterThan(STREAMS / 2);
      var ok = h.client.pushFolder(Launcher.golden("bf16"), "after-fuzz", 0, 1);
      assertThat(ok.getEngines(0).getOutcome().name()).isEqualTo("LOADED");
    }
  }

  static List<UpdateWeightsRequest> stream(SplittableRandom r, int i) {
    List<UpdateWeightsRequest> out = new ArrayList<>();
    int shape = r.nextInt(10);
    if (shape != 0) { // 1 in 10 streams start without a header
      out.add(header(r, i));
    }
    if (r.nextInt(20) == 0) {
      out.add(header(r, i)); // a duplicate header
    }
    int chunks = r.nextInt(4);
    long total = 0;
    java.util.Set<String> names = new java.util.HashSet<>();
    for (int c = 0; c < chunks; c++) {
      UpdateWeightsRequest ch = chunk(r);
      out.add(ch);
      names.add(ch.getChunk().getName());
      total += ch.getChunk().getData().size();
    }
    if (r.nextInt(8) != 0) {
      boolean honest = r.nextBoolean();
      out.add(UpdateWeightsRequest.newBuilder().setCommit(Commit.newBuilder()
          .setTensorCount(honest ? names.size() : pick(r))
          .setTotalBytes(honest ? total : pick(r))).build());
    }
    if (r.nextInt(30) == 0) {
      out.add(UpdateWeightsRequest.getDefaultInstance()); // a message with nothing set
    }
    return out;
  }

  private static UpdateWeightsRequest header(SplittableRandom r, int i) {
    String[] versions = {"v" + i, "", "bad version", "x".repeat(200), "v/" + i, "..", "v-" + i + ".1_a"};
    Header.Builder h = Header.newBuilder().setWeightVersion(versions[r.nextInt(versions.length)]);
    int partCount = r.nextInt(25) == 0 ? (int) pick(r) : r.nextInt(2);
    h.setPartCount(partCount).setPartIndex(r.nextInt(6) == 0 ? (int) pick(r) : 0);
    if (r.nextInt(10) == 0) {
      h.setFormat(Format.forNumber(r.nextInt(5)));
    }
    if (r.nextInt(20) == 0) {
      h.setPayload(Payload.PAYLOAD_QUANTIZED);
    }
    return UpdateWeightsRequest.newBuilder().setHeader(h).build();
  }

  private static UpdateWeightsRequest chunk(SplittableRandom r) {
    String[] names = {"model.layers.0.mlp.up_proj.weight", "norm.weight", "", "x".repeat(2000),
        "model.layers.1.self_attn.q_proj.weight"};
    TensorChunk.Builder c = TensorChunk.newBuilder().setName(names[r.nextInt(names.length)])
        .setDtype(DTYPES[r.nextInt(DTYPES.length)]);
    int dims = r.nextInt(4);
    for (int d = 0; d < dims; d++) {
      c.addShape(r.nextInt(4) == 0 ? pick(r) : 1 + r.nextInt(16));
    }
    int len = r.nextInt(5) == 0 ? 0 : r.nextInt(300);
    byte[] data = new byte[len];
    r.nextBytes(data);
    if (r.nextInt(3) == 0) { // plausible BF16 values, sometimes with a NaN
      ByteBuffer b = ByteBuffer.wrap(data).order(ByteOrder.LITTLE_ENDIAN);
      for (int k = 0; k + 1 < len; k += 2) {
        b.putShort(k, Bf16.fromFloat((float) r.nextGaussian()));
      }
      if (len > 1 && r.nextBoolean()) {
        b.putShort(0, (short) 0x7FC0);
      }
    }
    c.setData(ByteString.copyFrom(data)).setOffset(r.nextInt(4) == 0 ? pick(r) : 0);
    CRC32C crc = new CRC32C();
    crc.update(data);
    c.setCrc32C(r.nextInt(6) == 0 ? r.nextInt() : (int) crc.getValue());
    return UpdateWeightsRequest.newBuilder().setChunk(c).build();
  }

  private static long pick(SplittableRandom r) {
    return EDGE[r.nextInt(EDGE.length)];
  }
}
