package dev.weightsync.it;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.extension.AfterEachCallback;
import org.junit.jupiter.api.extension.ExtensionContext;

/**
 * Stops every process a test started through {@link Launcher#start} that is still alive when the
 * test ends, whatever path the test took out (an assertion that failed before its own cleanup, an
 * exception, a timeout), and again when the test JVM exits. Registered for every test class by
 * JUnit's extension auto-detection (src/test/resources/junit-platform.properties).
 */
public final class ProcessReaper implements AfterEachCallback {

  private static final List<Process> STARTED = new ArrayList<>();

  static {
    Runtime.getRuntime().addShutdownHook(new Thread(ProcessReaper::stopAll, "process-reaper"));
  }

  static synchronized Process track(Process p) {
    STARTED.add(p);
    return p;
  }

  @Override
  public void afterEach(ExtensionContext context) {
    stopAll();
  }

  static void stopAll() {
    List<Process> alive;
    synchronized (ProcessReaper.class) {
      alive = new ArrayList<>(STARTED);
      STARTED.clear();
    }
    for (Process p : alive) {
      p.descendants().forEach(ProcessHandle::destroyForcibly);
      p.destroyForcibly();
    }
    for (Process p : alive) {
      try {
        p.waitFor(10, TimeUnit.SECONDS);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        return;
      }
    }
  }
}
