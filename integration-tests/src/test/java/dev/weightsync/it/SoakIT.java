package dev.weightsync.it;

import static org.assertj.core.api.Assertions.assertThat;

import dev.weightsync.proto.v1.EngineOutcome;
import java.lang.management.BufferPoolMXBean;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * 100 consecutive versions of the golden model through one sidecar: every one loads, and heap
 * (after a GC), direct memory, open files and staging disk stay flat. Prints the numbers.
 */
class SoakIT {

  @TempDir Path tmp;

  private record Sample(long heap, long direct, long files, long staging) {
    @Override
    public String toString() {
      return String.format("heap %.1f MiB, direct %.1f MiB, open files %d, staging %.2f MB",
          heap / 1048576.0, direct / 1048576.0, files, staging / 1e6);
    }
  }

  private static Sample sample(Path staging) throws Exception {
    for (int i = 0; i < 3; i++) {
      System.gc();
      Thread.sleep(50);
    }
    long heap = ManagementFactory.getMemoryMXBean().getHeapMemoryUsage().getUsed();
    long direct = ManagementFactory.getPlatformMXBeans(BufferPoolMXBean.class).stream()
        .filter(b -> b.getName().equals("direct")).mapToLong(BufferPoolMXBean::getMemoryUsed).sum();
    long files;
    try (Stream<Path> s = Files.list(Path.of("/proc/self/fd"))) {
      files = s.count();
    }
    long bytes;
    try (Stream<Path> s = Files.walk(staging)) {
      bytes = s.filter(Files::isRegularFile).mapToLong(p -> p.toFile().length()).sum();
    }
    return new Sample(heap, direct, files, bytes);
  }

  @Test
  void hundredVersionsLeaveMemoryFilesAndDiskFlat() throws Exception {
    try (SidecarHarness h = new SidecarHarness(tmp, Map.of("keep-versions", 2))) {
      Sample warm = null;
      for (int v = 1; v <= 100; v++) {
        assertThat(h.client.pushFolder(Launcher.golden("bf16"), "soak-" + v, 0, 1).getEngines(0)
            .getOutcome()).isEqualTo(EngineOutcome.LOADED);
        if (v == 10) {
          warm = sample(h.staging);
        }
      }
      Sample end = sample(h.staging);
      System.out.println("soak: after 10 versions: " + warm + "; after 100: " + end);
      assertThat(h.stagedVersions()).containsExactly("soak-100", "soak-99");
      assertThat(end.staging()).isEqualTo(warm.staging()); // the same two versions' worth
      assertThat(end.files()).isLessThanOrEqualTo(warm.files() + 4);
      assertThat(end.direct()).isLessThanOrEqualTo(warm.direct() + (8 << 20));
      assertThat(end.heap()).isLessThanOrEqualTo(warm.heap() + (32 << 20));
    }
  }
}
