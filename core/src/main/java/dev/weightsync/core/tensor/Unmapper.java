package dev.weightsync.core.tensor;

import java.lang.reflect.Method;
import java.nio.ByteBuffer;
import java.nio.MappedByteBuffer;

/**
 * Unmaps a mapped buffer at once. Java 17 has no public unmap: a mapping otherwise lives until
 * the garbage collector finds its buffer, and a staged version deleted from /dev/shm keeps its
 * memory until then. {@code sun.misc.Unsafe.invokeCleaner} (module jdk.unsupported) is what
 * Lucene and Netty use for this; without it the mapping is left to the collector.
 */
public final class Unmapper {
  private Unmapper() {}

  private static final Object UNSAFE;
  private static final Method INVOKE_CLEANER;

  static {
    Object unsafe = null;
    Method invoke = null;
    try {
      Class<?> c = Class.forName("sun.misc.Unsafe");
      java.lang.reflect.Field f = c.getDeclaredField("theUnsafe");
      f.setAccessible(true);
      unsafe = f.get(null);
      invoke = c.getMethod("invokeCleaner", ByteBuffer.class);
    } catch (ReflectiveOperationException | RuntimeException e) {
      // no jdk.unsupported: the collector unmaps
    }
    UNSAFE = unsafe;
    INVOKE_CLEANER = invoke;
  }

  /** Unmaps {@code buffer}; it must not be touched afterwards. */
  public static void unmap(MappedByteBuffer buffer) {
    if (INVOKE_CLEANER == null) {
      return;
    }
    try {
      INVOKE_CLEANER.invoke(UNSAFE, buffer);
    } catch (ReflectiveOperationException e) {
      // left to the collector
    }
  }
}
