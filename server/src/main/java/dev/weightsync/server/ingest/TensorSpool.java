package dev.weightsync.server.ingest;

import dev.weightsync.core.tensor.FileRegionSource;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The file a part's tensors to be quantized are assembled in, beside the staged shard: each
 * tensor has its region, chunks are written into it as they arrive (in any order), and bands of
 * rows are handed to the quantizer as mappings of it. Neither heap nor direct memory grows with
 * the model. Written by one stream; {@link #written} is read by the staging ledger from others.
 */
final class TensorSpool implements AutoCloseable {

  private final Path path;
  private final FileChannel channel;
  private final AtomicLong written = new AtomicLong();
  private long length;

  TensorSpool(Path path) throws IOException {
    this.path = path;
    this.channel = FileChannel.open(path, StandardOpenOption.CREATE_NEW, StandardOpenOption.READ,
        StandardOpenOption.WRITE);
  }

  /** A region for a tensor of {@code bytes}; returns where it starts. */
  long allocate(long bytes) {
    long start = length;
    length += bytes;
    return start;
  }

  /** Writes a chunk, as the transport's buffers hold it, at {@code position}: one gather write. */
  void write(long position, List<ByteBuffer> pieces, long bytes) throws IOException {
    channel.position(position); // only this stream writes the spool
    ByteBuffer[] data = pieces.toArray(ByteBuffer[]::new);
    for (long left = bytes; left > 0; ) {
      left -= channel.write(data);
    }
    written.addAndGet(bytes);
  }

  /** A mapping of {@code [start, start + bytes)} for the quantizer, closed when its work ends. */
  FileRegionSource source(long start, long bytes, String name) throws IOException {
    return FileRegionSource.of(channel, start, bytes, name);
  }

  /** Bytes written so far. */
  long written() {
    return written.get();
  }

  /** Closes and deletes the file: the part is committed or discarded. */
  @Override
  public void close() throws IOException {
    channel.close();
    Files.deleteIfExists(path);
  }
}
