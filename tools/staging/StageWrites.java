import java.nio.ByteBuffer;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

/**
 * How fast results land in fresh staged pages, the two ways ShardSpool writes a large direct
 * buffer: pwrite, or a copy into a mapping of the region. THREADS threads each write 256 MiB in
 * 32 MiB pieces from one direct buffer into FILES fresh files in DIR (thread t into file t % FILES),
 * three rounds each way, alternating.
 *
 * <p>usage: java tools/staging/StageWrites.java THREADS FILES [DIR, default /dev/shm]
 */
public class StageWrites {
  private static final long PER_THREAD = 256L << 20;
  private static final int PIECE = 32 << 20;

  public static void main(String[] args) throws Exception {
    int threads = Integer.parseInt(args[0]);
    int files = Integer.parseInt(args[1]);
    Path dir = Path.of(args.length > 2 ? args[2] : "/dev/shm");
    ByteBuffer src = ByteBuffer.allocateDirect(PIECE);
    for (int i = 0; i < PIECE; i++) {
      src.put(i, (byte) (i * 31));
    }
    for (int round = 0; round < 3; round++) {
      for (String mode : new String[] {"mapped", "pwrite"}) {
        double s = run(dir, threads, files, mode.equals("pwrite"), src);
        System.out.printf("round %d %-6s %d thread(s), %d file(s): %.2f GB/s%n", round, mode,
            threads, files, threads * PER_THREAD / s / 1e9);
      }
    }
  }

  private static double run(Path dir, int threads, int files, boolean pwrite, ByteBuffer src)
      throws Exception {
    FileChannel[] channels = new FileChannel[files];
    Path[] paths = new Path[files];
    for (int f = 0; f < files; f++) {
      paths[f] = dir.resolve("ws-stage-writes-" + f);
      Files.deleteIfExists(paths[f]);
      channels[f] = FileChannel.open(paths[f], StandardOpenOption.CREATE_NEW,
          StandardOpenOption.READ, StandardOpenOption.WRITE);
      channels[f].write(ByteBuffer.allocate(1), PER_THREAD * threads - 1); // sparse, as ShardSpool
    }
    ExecutorService pool = Executors.newFixedThreadPool(threads);
    try {
      List<Future<?>> done = new ArrayList<>();
      long t0 = System.nanoTime();
      for (int t = 0; t < threads; t++) {
        int thread = t;
        done.add(pool.submit(() -> {
          FileChannel c = channels[thread % files];
          for (long off = 0; off < PER_THREAD; off += PIECE) {
            long at = thread * PER_THREAD + off;
            ByteBuffer data = src.duplicate().clear();
            if (pwrite) {
              while (data.hasRemaining()) {
                at += c.write(data, at);
              }
            } else {
              MappedByteBuffer region = c.map(FileChannel.MapMode.READ_WRITE, at, PIECE);
              region.put(data);
            }
          }
          return null;
        }));
      }
      for (Future<?> f : done) {
        f.get();
      }
      return (System.nanoTime() - t0) / 1e9;
    } finally {
      pool.shutdown();
      for (int f = 0; f < files; f++) {
        channels[f].close();
        Files.delete(paths[f]);
      }
      System.gc(); // let the mappings go
    }
  }
}
