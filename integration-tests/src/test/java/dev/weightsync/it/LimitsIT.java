package dev.weightsync.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.weightsync.cli.engine.RouteFault;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Each limit refuses with RESOURCE_EXHAUSTED naming it, before anything is staged or any engine
 * called; the next version within the limits still loads.
 */
class LimitsIT {

  @TempDir Path tmp;

  private void assertRefused(Map<String, Object> limit, String... fragments) throws Exception {
    try (SidecarHarness h = new SidecarHarness(tmp.resolve(String.valueOf(limit.hashCode())), limit)) {
      assertThatThrownBy(() -> h.client.pushFolder(Launcher.golden("bf16"), "big", 0, 1))
          .isInstanceOf(StatusRuntimeException.class)
          .satisfies(e -> {
            Status s = ((StatusRuntimeException) e).getStatus();
            assertThat(s.getCode()).isEqualTo(Status.Code.RESOURCE_EXHAUSTED);
            for (String f : fragments) {
              assertThat(s.getDescription()).contains(f);
            }
          });
      // the sidecar discards a refused part before it answers (PartStream.fail)
      assertThat(h.engine.routes()).isEmpty();
      assertThat(h.stagingEntries()).isEmpty();
    }
  }

  @Test
  void tensorVersionAndCountLimits() throws Exception {
    assertRefused(Map.of("max-tensor-bytes", "1KiB"), "max-tensor-bytes", "over the 1024-byte limit");
    assertRefused(Map.of("max-version-bytes", "256KB"), "max-version-bytes");
    assertRefused(Map.of("max-tensors", 3), "max-tensors", "3 tensors");
  }

  /**
   * A megabyte of caller text in a refused chunk: the status echoes it clipped just past the
   * longest legal value, so it still fits gRPC's metadata limit on a real connection
   * (INVALID_ARGUMENT, not a RESOURCE_EXHAUSTED about metadata).
   */
  @Test
  void aRefusalEchoingAMegabyteOfCallerTextStillFitsTheStatusMetadata() throws Exception {
    try (SidecarHarness h = new SidecarHarness(tmp, Map.of("format", "fp8-block"));
        RawStream raw = new RawStream(h.sidecar.port())) {
      Status s = raw.send(List.of(RawStream.header("dtype", 0, 1),
          RawStream.chunk("w", "Q\u0007" + "z".repeat(1 << 20), new long[] {4, 8}, 0,
              new byte[64])), true, false);
      assertThat(s.getCode()).as(String.valueOf(s.getDescription()))
          .isEqualTo(Status.Code.INVALID_ARGUMENT);
      assertThat(s.getDescription()).contains("unknown dtype 'Q\\x07zzz").contains("z...'");
      assertThat(h.engine.routes()).isEmpty();
    }
  }

  @Test
  void aStagingFilesystemWithoutRoomRefusesBeforeWritingAByte() throws Exception {
    // The real free-space check against the real filesystem, asked to keep more than any disk has.
    assertRefused(Map.of("staging-reserve", "1000TiB"), "bytes free", "staging-reserve");
  }

  @Test
  void streamsBeyondMaxStreamsAreRefusedAndTheSlotComesBack() throws Exception {
    try (SidecarHarness h = new SidecarHarness(tmp, Map.of("max-streams", 1))) {
      // a late answer to the pause keeps the first stream open during its session
      h.engine.faults(f -> f.routes.put("/pause_generation",
          new RouteFault(RouteFault.Kind.SLOW, 1, 1500)));
      CompletableFuture<?> first = CompletableFuture.runAsync(() -> {
        try {
          h.client.pushFolder(Launcher.golden("bf16"), "1", 0, 1);
        } catch (java.io.IOException e) {
          throw new java.io.UncheckedIOException(e);
        }
      });
      for (int i = 0; i < 200 && !h.engine.routes().contains("/pause_generation"); i++) {
        Thread.sleep(25);
      }
      try (RawStream raw = new RawStream(h.sidecar.port())) {
        Status s = raw.send(List.of(RawStream.header("2", 0, 1)), true, false);
        assertThat(s.getCode()).isEqualTo(Status.Code.RESOURCE_EXHAUSTED);
        assertThat(s.getDescription()).contains("max-streams");
      }
      first.get();
      assertThat(h.client.pushFolder(Launcher.golden("bf16"), "3", 0, 1).getEngines(0).getOutcome())
          .isEqualTo(dev.weightsync.proto.v1.EngineOutcome.LOADED);
    }
  }
}
