package dev.weightsync.server.pipeline;

/**
 * Decides whether a version succeeded when only some engines (or relay targets) loaded it:
 * {@code all} needs every one; {@code quorum} needs at least {@code fraction} of them (rounded
 * up, at least one). Engines that failed are out of date until a later version reaches them.
 */
public record DeliveryPolicy(boolean quorum, double fraction) {

  public static final DeliveryPolicy ALL = new DeliveryPolicy(false, 1);

  /** At least {@code fraction} of the engines must load a version. */
  public static DeliveryPolicy quorum(double fraction) {
    return new DeliveryPolicy(true, fraction);
  }

  /** How many of {@code engines} must load a version for it to succeed. */
  public int required(int engines) {
    if (!quorum || engines == 0) {
      return engines;
    }
    return Math.max(1, (int) Math.ceil(fraction * engines - 1e-9));
  }

  @Override
  public String toString() {
    return quorum ? "quorum " + fraction : "all";
  }
}
