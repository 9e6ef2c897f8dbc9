package dev.weightsync.server.quant;

import java.util.Locale;

/**
 * CUDA device UUIDs as trainers and the driver spell them: {@code GPU-} and 32 hex digits in
 * groups, or {@code MIG-} for a MIG instance (whose UUID the driver reports from CUDA 11.4 on).
 * Two spellings name the same device when their digits match, prefix and case aside.
 */
public final class GpuUuids {
  private GpuUuids() {}

  /** Whether two UUIDs name the same device. */
  public static boolean same(String a, String b) {
    return a != null && b != null && !digits(a).isEmpty() && digits(a).equals(digits(b));
  }

  private static String digits(String uuid) {
    String u = uuid.trim().toLowerCase(Locale.ROOT);
    return u.startsWith("gpu-") || u.startsWith("mig-") ? u.substring(4) : u;
  }
}
