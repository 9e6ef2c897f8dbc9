package dev.weightsync.cli.engine;

import java.util.Locale;

/**
 * A fault the stand-in engine injects on one route, {@code count} times (-1: until cleared).
 * Each kind says whether the engine still does the work, because that decides what a sidecar may
 * conclude from the answer it does (not) get:
 *
 * <ul>
 *   <li>{@code HTTP_400}, {@code HTTP_500}, {@code SUCCESS_FALSE}: the engine refuses and does
 *       nothing — except a load, which may have applied part of the folder (weights mixed).
 *   <li>{@code GARBAGE}: the work is done; the answer is not JSON.
 *   <li>{@code DROP}: the work is done; the connection is closed before any answer.
 *   <li>{@code SLOW}: the work is done at once and answered after {@code millis} (a caller with a
 *       shorter timeout gives up although the work happened; {@code Faults.loadMillis} is how a
 *       load that takes long is made).
 *   <li>{@code HANG}: no answer and no work, for {@code millis} (0: until the engine is closed).
 * </ul>
 */
public record RouteFault(Kind kind, int count, long millis) {

  public enum Kind { HTTP_400, HTTP_500, SUCCESS_FALSE, GARBAGE, DROP, SLOW, HANG }

  /** Parses {@code {"kind": "...", "count": N, "ms": M}} fields. */
  public static RouteFault of(String kind, int count, long millis) {
    return new RouteFault(Kind.valueOf(kind.toUpperCase(Locale.ROOT)), count, millis);
  }

  /** Whether the work of the route still happens under this fault. */
  boolean workDone() {
    return kind == Kind.GARBAGE || kind == Kind.DROP || kind == Kind.SLOW;
  }

  /** This fault after serving once; null when it is used up. */
  RouteFault served() {
    return count < 0 ? this : count > 1 ? new RouteFault(kind, count - 1, millis) : null;
  }
}
