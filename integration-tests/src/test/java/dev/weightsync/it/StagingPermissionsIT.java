package dev.weightsync.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Staged versions (and convert's output) can be read by the engine's user — another uid in
 * another container — through the staging group or the mode, and by no one else by default.
 * Reading as another user needs root (setpriv); CI runs as root. The modes themselves are also
 * asserted, which any user can check.
 */
class StagingPermissionsIT {

  @TempDir Path tmp;

  static final String NOBODY = "65534";
  static final String USERS_GID = "100"; // Debian's 'users' group
  static final String OTHER_GID = "65534"; // nogroup

  @BeforeEach
  void traversable() throws Exception {
    Files.setPosixFilePermissions(tmp, PosixFilePermissions.fromString("rwxr-xr-x"));
  }

  @Test
  void aMemberOfTheStagingGroupReadsAVersionAndOthersCannot() throws Exception {
    try (SidecarHarness h = new SidecarHarness(tmp, Map.of("staging-group", "users"))) {
      h.client.pushFolder(Launcher.golden("bf16"), "g1", 0, 1);
      Path version = h.staging.resolve("g1");
      assertThat(mode(version)).isEqualTo("rwxr-x---");
      Path shard = anyShard(version);
      assertThat(mode(shard)).isEqualTo("rw-r-----");
      assertThat(Files.getAttribute(shard, "unix:gid")).isEqualTo(100);
      assertThat(Files.getAttribute(h.staging, "unix:gid")).isEqualTo(100);
      assumeRoot();
      assertThat(readAs(USERS_GID, shard).exitCode()).as("a member of 'users' reads it").isZero();
      Launcher.Result other = readAs(OTHER_GID, shard);
      assertThat(other.exitCode()).as("anyone else cannot").isNotZero();
      assertThat(other.stderr()).contains("Permission denied");
    }
  }

  @Test
  void withMode0755AnyUserReadsIt() throws Exception {
    try (SidecarHarness h = new SidecarHarness(tmp, Map.of("staging-mode", "0755"))) {
      h.client.pushFolder(Launcher.golden("bf16"), "m1", 0, 1);
      Path shard = anyShard(h.staging.resolve("m1"));
      assertThat(mode(h.staging.resolve("m1"))).isEqualTo("rwxr-xr-x");
      assertThat(mode(shard)).isEqualTo("rw-r--r--");
      assumeRoot();
      assertThat(readAs(OTHER_GID, shard).exitCode()).isZero();
    }
  }

  @Test
  void convertsOutputTakesTheModeAndGroupItIsGiven() throws Exception {
    Path out = tmp.resolve("out");
    Launcher.Result r = Launcher.weightsync("convert", "--input-dir",
        Launcher.golden("bf16").toString(), "--output-dir", out.toString(), "--format",
        "fp8-block", "--output-group", "users");
    assertThat(r.exitCode()).as(r.stderr()).isZero();
    assertThat(mode(out)).isEqualTo("rwxr-x---");
    assertThat(mode(out.resolve("config.json"))).isEqualTo("rw-r-----");
    assertThat(Files.getAttribute(out.resolve("config.json"), "unix:gid")).isEqualTo(100);
    assumeRoot();
    assertThat(readAs(USERS_GID, out.resolve("config.json")).exitCode()).isZero();
    assertThat(readAs(OTHER_GID, out.resolve("config.json")).exitCode()).isNotZero();
  }

  private static String mode(Path p) throws Exception {
    return PosixFilePermissions.toString(Files.getPosixFilePermissions(p));
  }

  private static Path anyShard(Path version) throws Exception {
    try (var s = Files.list(version)) {
      return s.filter(p -> p.toString().endsWith(".safetensors")).findFirst().orElseThrow();
    }
  }

  private static void assumeRoot() throws Exception {
    Launcher.Result id = Launcher.run(List.of("id", "-u"), 10);
    assumeTrue(id.stdout().trim().equals("0") && Files.isExecutable(Path.of("/usr/bin/setpriv")),
        "skipped: reading as another user needs root and setpriv (CI runs as root); the modes and"
            + " group were asserted above");
  }

  /** Reads {@code file} as uid 65534 with only the group {@code gid}. */
  private static Launcher.Result readAs(String gid, Path file) throws Exception {
    return Launcher.run(List.of("/usr/bin/setpriv", "--reuid=" + NOBODY, "--regid=" + gid,
        "--clear-groups", "dd", "if=" + file, "of=/dev/null", "bs=16", "count=1", "status=none"), 30);
  }
}
