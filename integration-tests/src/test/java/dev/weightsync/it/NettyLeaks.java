package dev.weightsync.it;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.PooledByteBufAllocator;
import io.netty.util.ResourceLeakDetector;
import java.util.ArrayList;
import java.util.List;
import java.util.logging.Handler;
import java.util.logging.LogRecord;
import java.util.logging.Logger;

/**
 * Netty's leak detector at its paranoid level (every buffer tracked) while open, and the leaks it
 * reports: a buffer that was garbage-collected without being released. Netty logs them through
 * java.util.logging (no SLF4J here); {@link #reported()} makes the collector and the detector run
 * first, so that a leak from before the call is seen.
 */
final class NettyLeaks implements AutoCloseable {
  private final Logger logger = Logger.getLogger(ResourceLeakDetector.class.getName());
  private final List<String> leaks = java.util.Collections.synchronizedList(new ArrayList<>());
  private final ResourceLeakDetector.Level before = ResourceLeakDetector.getLevel();
  private final Handler handler = new Handler() {
    @Override
    public void publish(LogRecord r) {
      if (r.getMessage() != null && r.getMessage().contains("LEAK")) {
        leaks.add(r.getMessage());
      }
    }

    @Override
    public void flush() {}

    @Override
    public void close() {}
  };

  NettyLeaks() {
    ResourceLeakDetector.setLevel(ResourceLeakDetector.Level.PARANOID);
    logger.addHandler(handler);
  }

  /** The leaks reported so far, after a few collections (the detector reports on allocation). */
  List<String> reported() throws InterruptedException {
    for (int i = 0; i < 5; i++) {
      System.gc();
      Thread.sleep(20);
      for (int j = 0; j < 200; j++) {
        ByteBuf b = PooledByteBufAllocator.DEFAULT.directBuffer(64);
        b.release();
      }
    }
    return List.copyOf(leaks);
  }

  @Override
  public void close() {
    logger.removeHandler(handler);
    ResourceLeakDetector.setLevel(before);
  }
}
