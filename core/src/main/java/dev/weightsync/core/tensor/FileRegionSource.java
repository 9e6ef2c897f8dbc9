package dev.weightsync.core.tensor;

import java.io.IOException;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;

/**
 * A tensor whose bytes lie in a region of a file, memory-mapped. A region under 2 GiB is mapped
 * once and windows are slices of it; a larger one maps each window as it is asked for.
 */
public final class FileRegionSource {
  private FileRegionSource() {}

  public static TensorSource of(FileChannel channel, long start, long length, String name)
      throws IOException {
    if (length <= Integer.MAX_VALUE) {
      return TensorSource.of(channel.map(FileChannel.MapMode.READ_ONLY, start, length));
    }
    return (offset, len) -> {
      if (offset < 0 || len < 0 || offset + len > length) {
        throw new IndexOutOfBoundsException(
            "window [" + offset + ", " + (offset + len) + ") outside tensor " + name);
      }
      return channel.map(FileChannel.MapMode.READ_ONLY, start + offset, len)
          .order(ByteOrder.LITTLE_ENDIAN);
    };
  }
}
