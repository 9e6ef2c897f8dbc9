package dev.weightsync.core.checkpoint;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.GroupPrincipal;
import java.nio.file.attribute.PosixFileAttributeView;
import java.nio.file.attribute.PosixFilePermission;
import java.util.EnumSet;
import java.util.List;
import java.util.Set;
import java.util.stream.Stream;

/**
 * Who may read a staged version or a converted folder. An engine usually runs as another user,
 * in another container, so folders get {@code mode} (default 0750) and files the same bits without
 * execute (0640), and optionally a group (a name or a gid) that the engine's user belongs to.
 * Applied to a folder before it is renamed into place, so no one ever sees it with other bits.
 */
public record FolderPermissions(int mode, String group) {

  public static final FolderPermissions DEFAULT = new FolderPermissions(0750, null);

  public FolderPermissions {
    if ((mode & ~0777) != 0 || (mode & 0700) != 0700) {
      throw new IllegalArgumentException(String.format("staging mode %04o: must be 0700 to 0777"
          + " with the owner's rwx (the sidecar writes and deletes these folders)", mode));
    }
    if (group != null && group.isBlank()) {
      group = null;
    }
  }

  /** Parses an octal mode such as {@code 0750} or {@code 755}. */
  public static int parseMode(String octal) {
    if (octal == null || !octal.matches("[0-7]{3,4}")) {
      throw new IllegalArgumentException("staging mode '" + octal + "': an octal mode such as 0750"
          + " or 0755 is expected");
    }
    return Integer.parseInt(octal, 8);
  }

  /** @throws IllegalArgumentException when the group does not exist on this machine */
  public void checkGroup() {
    try {
      lookupGroup(Path.of("/"));
    } catch (IOException e) {
      throw new IllegalArgumentException(e.getMessage(), e);
    }
  }

  /** Sets the mode (and group) of {@code folder}, and of everything under it. */
  public void applyTree(Path folder) throws IOException {
    GroupPrincipal g = lookupGroup(folder);
    List<Path> all;
    try (Stream<Path> s = Files.walk(folder)) {
      all = s.toList();
    }
    for (Path p : all) {
      apply(p, g);
    }
  }

  /** Sets the mode (and group) of one folder or file. */
  public void applyOne(Path p) throws IOException {
    apply(p, lookupGroup(p));
  }

  private void apply(Path p, GroupPrincipal g) throws IOException {
    PosixFileAttributeView view = Files.getFileAttributeView(p, PosixFileAttributeView.class);
    if (view == null) {
      return; // not a POSIX filesystem: nothing to set
    }
    if (g != null) {
      view.setGroup(g);
    }
    view.setPermissions(toSet(Files.isDirectory(p) ? mode : mode & 0666));
  }

  private GroupPrincipal lookupGroup(Path p) throws IOException {
    if (group == null) {
      return null;
    }
    try {
      return p.getFileSystem().getUserPrincipalLookupService().lookupPrincipalByGroupName(group);
    } catch (IOException e) {
      throw new IOException("staging group '" + group + "': no such group on this machine", e);
    }
  }

  private static Set<PosixFilePermission> toSet(int bits) {
    PosixFilePermission[] order = {
        PosixFilePermission.OTHERS_EXECUTE, PosixFilePermission.OTHERS_WRITE,
        PosixFilePermission.OTHERS_READ, PosixFilePermission.GROUP_EXECUTE,
        PosixFilePermission.GROUP_WRITE, PosixFilePermission.GROUP_READ,
        PosixFilePermission.OWNER_EXECUTE, PosixFilePermission.OWNER_WRITE,
        PosixFilePermission.OWNER_READ};
    Set<PosixFilePermission> out = EnumSet.noneOf(PosixFilePermission.class);
    for (int i = 0; i < order.length; i++) {
      if ((bits & (1 << i)) != 0) {
        out.add(order[i]);
      }
    }
    return out;
  }
}
