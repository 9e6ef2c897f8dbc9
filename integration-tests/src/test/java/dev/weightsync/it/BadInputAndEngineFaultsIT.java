package dev.weightsync.it;

import static dev.weightsync.it.RawStream.chunk;
import static dev.weightsync.it.RawStream.commit;
import static dev.weightsync.it.RawStream.header;
import static org.assertj.core.api.Assertions.assertThat;

import dev.weightsync.core.quant.Bf16;
import dev.weightsync.proto.v1.EngineOutcome;
import dev.weightsync.proto.v1.Format;
import dev.weightsync.proto.v1.UpdateWeightsRequest;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

/**
 * Bad input gets a precise status, nothing is staged and the engine is never called; engine faults
 * leave the engine serving (or paused and reported after a failed load); and in every case the
 * next version goes through. Over the in-process transport: what is checked here is the service's,
 * not the socket's (LimitsIT and ChunkingIT keep what needs a real connection).
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class BadInputAndEngineFaultsIT {

  static final String W = "model.layers.0.mlp.up_proj.weight";
  static final long[] SHAPE = {4, 8};

  Path tmp;
  SidecarHarness h;
  RawStream raw;
  int next = 1;

  @BeforeAll
  void start() throws Exception {
    tmp = java.nio.file.Files.createTempDirectory("weightsync-faults-");
    h = SidecarHarness.inProcess(tmp, Map.of("format", "fp8-block", "part-timeout", "2s",
        "engine-backoff", "1ms")); // flush is tried 20 times, backing off up to 32 times this
    raw = new RawStream(h.channel());
  }

  @AfterAll
  void stop() throws Exception {
    raw.close();
    h.close();
    dev.weightsync.core.checkpoint.CheckpointConverter.deleteTree(tmp);
  }

  @BeforeEach
  void clean() {
    h.engine.faults(f -> {
      f.flush400 = 0;
      f.loadFailsForever = false;
      f.loadFailures = 0;
      f.sessionRoutes404 = false;
      f.slowMillis = 0;
    });
    h.engine.clearCalls();
  }

  static byte[] bf16(float... values) {
    ByteBuffer b = ByteBuffer.allocate(values.length * 2).order(ByteOrder.LITTLE_ENDIAN);
    for (float v : values) {
      b.putShort(Bf16.fromFloat(v));
    }
    return b.array();
  }

  static byte[] weights() {
    float[] v = new float[32];
    for (int i = 0; i < v.length; i++) {
      v[i] = (i - 16) / 7f;
    }
    return bf16(v);
  }

  private void assertRefused(List<UpdateWeightsRequest> msgs, boolean complete, Status.Code code,
      String... fragments) throws Exception {
    Status s = raw.send(msgs, complete, false);
    assertThat(s.getCode()).as(String.valueOf(s.getDescription())).isEqualTo(code);
    for (String f : fragments) {
      assertThat(s.getDescription()).contains(f);
    }
    assertNothingHappened();
  }

  /**
   * Holds as soon as the answer is in: the sidecar discards a refused part before it answers
   * (PartStream.fail), and a cancelled one before RawStream returns (it waits for the status).
   */
  private void assertNothingHappened() throws Exception {
    assertThat(h.engine.routes()).isEmpty();
    assertThat(h.stagingEntries()).allMatch(n -> !n.startsWith("."));
  }

  /** After each failure, a good version still loads and leaves the engine serving it. */
  private void assertNextVersionLoads() throws Exception {
    String v = "ok-" + next++;
    Status s = raw.send(List.of(header(v, 0, 1), chunk(W, "BF16", SHAPE, 0, weights()),
        commit(1, 64)), true, false);
    assertThat(s.getCode()).as(String.valueOf(s.getDescription())).isEqualTo(Status.Code.OK);
    assertThat(h.engine.weightVersion()).isEqualTo(v);
    assertThat(h.engine.paused()).isFalse();
    h.engine.clearCalls();
  }

  private static UpdateWeightsRequest subPart(String version, int sub, int subs) {
    UpdateWeightsRequest h = header(version, 0, 1);
    return h.toBuilder().setHeader(h.getHeader().toBuilder().setSubPartIndex(sub)
        .setSubPartCount(subs)).build();
  }

  @Test
  void nanIsRefusedNamingTheTensor() throws Exception {
    float[] v = new float[32];
    v[13] = Float.NaN;
    assertRefused(List.of(header("nan", 0, 1), chunk(W, "BF16", SHAPE, 0, bf16(v)), commit(1, 64)),
        true, Status.Code.INVALID_ARGUMENT, W, "element 13");
    assertNextVersionLoads();
  }

  @Test
  void aChunkOutsideTheShapeIsRefused() throws Exception {
    assertRefused(List.of(header("shape", 0, 1), chunk(W, "BF16", new long[] {2, 8}, 0, weights())),
        true, Status.Code.INVALID_ARGUMENT, W, "outside its 32 bytes");
    assertNextVersionLoads();
  }

  @Test
  void overlappingChunksAreRefused() throws Exception {
    byte[] w = weights();
    assertRefused(List.of(header("overlap", 0, 1),
        chunk(W, "BF16", SHAPE, 0, java.util.Arrays.copyOfRange(w, 0, 40)),
        chunk(W, "BF16", SHAPE, 32, java.util.Arrays.copyOfRange(w, 32, 64))),
        true, Status.Code.INVALID_ARGUMENT, "overlaps");
    assertNextVersionLoads();
  }

  @Test
  void aMissingChunkIsFoundAtCommit() throws Exception {
    byte[] w = weights();
    assertRefused(List.of(header("gap", 0, 1),
        chunk(W, "BF16", SHAPE, 0, java.util.Arrays.copyOfRange(w, 0, 16)),
        chunk(W, "BF16", SHAPE, 32, java.util.Arrays.copyOfRange(w, 32, 64)), commit(1, 64)),
        true, Status.Code.INVALID_ARGUMENT, "incomplete at commit", "first gap at byte 16");
    assertNextVersionLoads();
  }

  @Test
  void aTruncatedStreamIsRefused() throws Exception {
    assertRefused(List.of(header("trunc", 0, 1), chunk(W, "BF16", SHAPE, 0, weights())), true,
        Status.Code.INVALID_ARGUMENT, "ended without a commit");
    assertNextVersionLoads();
  }

  @Test
  void aStreamThatFallsSilentIsEndedAfterThePartTimeout() throws Exception {
    Status s = raw.send(List.of(header("silent", 0, 1), chunk(W, "BF16", SHAPE, 0, weights())),
        false, false); // neither commit nor half-close: the trainer hangs
    assertThat(s.getCode()).isEqualTo(Status.Code.DEADLINE_EXCEEDED);
    assertThat(s.getDescription()).contains("sent nothing for 2 s");
    assertNothingHappened();
    assertNextVersionLoads();
  }

  @Test
  void aClientCancelLeavesNothing() throws Exception {
    Status s = raw.send(List.of(header("cancel", 0, 1), chunk(W, "BF16", SHAPE, 0, weights())),
        false, true);
    assertThat(s.getCode()).isEqualTo(Status.Code.CANCELLED);
    assertNothingHappened();
    assertNextVersionLoads();
  }

  @Test
  void otherMalformedStreams() throws Exception {
    byte[] w = weights();
    assertRefused(List.of(chunk(W, "BF16", SHAPE, 0, w)), true, Status.Code.INVALID_ARGUMENT,
        "before the header");
    assertRefused(List.of(header("crc", 0, 1), RawStream.chunkWithCrc(W, "BF16", SHAPE, 0, w, 1234)),
        true, Status.Code.INVALID_ARGUMENT, "CRC32C");
    assertRefused(List.of(header("dtype", 0, 1), chunk(W, "Q4", SHAPE, 0, w)), true,
        Status.Code.INVALID_ARGUMENT, "unknown dtype 'Q4'");
    assertRefused(List.of(header("count", 0, 1), chunk(W, "BF16", SHAPE, 0, w), commit(2, 64)),
        true, Status.Code.INVALID_ARGUMENT, "commit counts 2 tensors");
    assertRefused(List.of(header("bad version!", 0, 1)), true, Status.Code.INVALID_ARGUMENT,
        "weight_version");
    for (String pathLike : List.of("..", ".", ".tmp-1")) { // would name a folder outside staging
      assertRefused(List.of(header(pathLike, 0, 1), chunk(W, "BF16", SHAPE, 0, w), commit(1, 64)),
          true, Status.Code.INVALID_ARGUMENT, "must not start with '.'");
    }
    assertRefused(List.of(header("twice", 0, 1), header("twice", 0, 1)), true,
        Status.Code.INVALID_ARGUMENT, "second header");
    assertRefused(List.of(header("fmt", Format.INT4_GROUP)), true, Status.Code.FAILED_PRECONDITION,
        "serves FP8_BLOCK");
    assertRefused(List.of(header("empty", 0, 1), commit(0, 0)), true, Status.Code.INVALID_ARGUMENT,
        "no tensors");
    assertRefused(List.of(header("bigpart", -5, 2)), true, Status.Code.INVALID_ARGUMENT,
        "part_index 4294967291 is not below part_count 2");
    assertRefused(List.of(header("manyparts", 0, -1)), true, Status.Code.INVALID_ARGUMENT,
        "part_count 4294967295 exceeds 4096");
    assertRefused(List.of(subPart("subidx", 3, 3)), true, Status.Code.INVALID_ARGUMENT,
        "sub_part_index 3 is not below sub_part_count 3");
    assertRefused(List.of(subPart("manysubs", 0, 257)), true, Status.Code.INVALID_ARGUMENT,
        "sub_part_count 257 exceeds 256");
    assertRefused(List.of(header("neg", 0, 1), chunk(W, "BF16", new long[] {-1L, 8}, 0, w)), true,
        Status.Code.INVALID_ARGUMENT);
    // the commit is a part's last message: anything after it refuses the part
    assertRefused(List.of(header("late", 0, 1), chunk(W, "BF16", SHAPE, 0, w), commit(1, 64),
        chunk(W, "BF16", SHAPE, 0, w)), true, Status.Code.INVALID_ARGUMENT,
        "a chunk message arrived after the commit");
    assertRefused(List.of(header("late2", 0, 1), chunk(W, "BF16", SHAPE, 0, w), commit(1, 64),
        commit(1, 64)), true, Status.Code.INVALID_ARGUMENT, "a commit message arrived after the commit");
    // names the staged safetensors header could not hold, or a log line would print raw
    assertRefused(List.of(header("meta", 0, 1), chunk("__metadata__", "BF16", SHAPE, 0, w),
        commit(1, 64)), true, Status.Code.INVALID_ARGUMENT, "header's own key");
    assertRefused(List.of(header("noname", 0, 1), chunk("", "BF16", SHAPE, 0, w), commit(1, 64)),
        true, Status.Code.INVALID_ARGUMENT, "1-1024 characters");
    assertRefused(List.of(header("ctl", 0, 1), chunk("a\nINFO forged", "BF16", SHAPE, 0, w),
        commit(1, 64)), true, Status.Code.INVALID_ARGUMENT, "'a\\x0aINFO forged' holds control");
    assertRefused(List.of(header("long", 0, 1), chunk("x".repeat(5000), "BF16", SHAPE, 0, w),
        commit(1, 64)), true, Status.Code.INVALID_ARGUMENT, "has 5000");
    assertNextVersionLoads();
  }

  @Test
  void aMissingPartAbortsTheVersionAfterThePartTimeout() throws Exception {
    Status s = raw.send(List.of(header("half", 0, 2), chunk(W, "BF16", SHAPE, 0, weights()),
        commit(1, 64)), true, false);
    assertThat(s.getCode()).isEqualTo(Status.Code.DEADLINE_EXCEEDED);
    assertThat(s.getDescription()).contains("part(s) [1] of 2 did not arrive");
    assertNothingHappened();
    assertNextVersionLoads();
  }

  @Test
  void flushRefusedForeverLeavesTheEngineServingItsPreviousVersion() throws Exception {
    assertNextVersionLoads();
    String before = h.engine.weightVersion();
    h.engine.faults(f -> f.flush400 = -1);
    StatusRuntimeException e = pushExpectingFailure("noflush");
    assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.INTERNAL);
    assertThat(e.getStatus().getDescription()).contains("FAILED_UNTOUCHED").contains("flush_cache");
    assertThat(h.engine.paused()).isFalse();
    assertThat(h.engine.weightVersion()).isEqualTo(before);
    assertThat(h.engine.routes()).doesNotContain("/update_weights_from_disk").endsWith("/continue_generation");
    var status = h.client.status().getEngines(0);
    assertThat(status.getState()).isEqualTo("SERVING");
    assertThat(status.getLoadedVersion()).isEqualTo(before);
    clean();
    assertNextVersionLoads();
  }

  @Test
  void anEngineWithoutSessionRoutesIsUpdatedWithoutThem() throws Exception {
    h.engine.faults(f -> f.sessionRoutes404 = true);
    var r = h.client.pushFolder(Launcher.golden("bf16"), "nosession", 0, 1);
    assertThat(r.getEngines(0).getOutcome()).isEqualTo(EngineOutcome.LOADED);
    assertThat(h.engine.routes()).containsExactly("/pause_generation", "/flush_cache",
        "/begin_weight_update", "/update_weights_from_disk", "/get_weight_version",
        "/continue_generation");
  }

  @Test
  void aLoadThatFailsEvenWhenRetriedLeavesTheEnginePausedAndReported() throws Exception {
    h.engine.faults(f -> f.loadFailsForever = true);
    StatusRuntimeException e = pushExpectingFailure("badload");
    assertThat(e.getStatus().getDescription()).contains("FAILED_PAUSED").contains("left paused")
        .contains("may be a mix of");
    assertThat(h.engine.paused()).isTrue();
    assertThat(h.engine.routes().stream().filter("/update_weights_from_disk"::equals).count())
        .isEqualTo(2); // the load and one retry (engine-retries=1)
    assertThat(h.client.status().getEngines(0).getState()).isEqualTo("MAYBE_MIXED");
    assertThat(h.engine.violations()).isZero();
    clean();
    assertNextVersionLoads(); // the next version resumes it
    assertThat(h.client.status().getEngines(0).getState()).isEqualTo("SERVING");
  }

  @Test
  void aLoadThatFailsOnceIsRetried() throws Exception {
    h.engine.faults(f -> f.loadFailures = 1);
    var r = h.client.pushFolder(Launcher.golden("bf16"), "retried", 0, 1);
    assertThat(r.getEngines(0).getOutcome()).isEqualTo(EngineOutcome.LOADED);
    assertThat(h.engine.paused()).isFalse();
  }

  private StatusRuntimeException pushExpectingFailure(String version) {
    try {
      h.client.pushFolder(Launcher.golden("bf16"), version, 0, 1);
    } catch (StatusRuntimeException e) {
      return e;
    } catch (java.io.IOException e) {
      throw new AssertionError(e);
    }
    throw new AssertionError("the push of " + version + " succeeded");
  }
}
