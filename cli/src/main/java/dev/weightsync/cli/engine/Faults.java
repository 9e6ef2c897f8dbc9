package dev.weightsync.cli.engine;

import java.util.HashMap;
import java.util.Map;

/**
 * What the stand-in engine has been told to do wrong; counts go down as faults are served.
 * Changed under the engine's lock ({@link StandInEngine#faults}).
 */
public final class Faults {
  public boolean sessionRoutes404;
  public int loadFailures;
  public int flush400;
  public long slowMillis;
  public boolean loadFailsForever;
  /** How long a load takes (while it holds the update lock). */
  public long loadMillis;
  /** Faults by route ({@code /update_weights_from_disk} ...). */
  public final Map<String, RouteFault> routes = new HashMap<>();
}
