package dev.weightsync.cli;

import java.io.PrintStream;

/** Progress of a long job on stderr: at most one line a second, and the last one always. */
final class ProgressLine {
  private final PrintStream out;
  private long lastPrint;

  ProgressLine(PrintStream out) {
    this.out = out;
  }

  void tensorDone(String name, int done, int total, long bytesDone, long bytesTotal) {
    long now = System.nanoTime();
    if (done < total && now - lastPrint < 1_000_000_000L) {
      return;
    }
    lastPrint = now;
    out.printf("[%d/%d tensors, %s of %s] %s%n", done, total,
        ByteSizeConverter.format(bytesDone), ByteSizeConverter.format(bytesTotal), name);
  }
}
