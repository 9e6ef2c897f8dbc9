package dev.weightsync.cli;

import dev.weightsync.client.Tensor;
import dev.weightsync.core.tensor.TensorSource;
import java.io.PrintStream;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

/**
 * The progress of a push on stderr — bytes, rate, tensors, at most one line a second — counted
 * as the client reads each chunk to send it, and a last line once every byte has gone out saying
 * what the call now waits for.
 */
final class PushProgress {
  private final PrintStream out;
  private final long totalBytes;
  private final int totalTensors;
  private final String waitingFor;
  private final long start = System.nanoTime();
  private final Set<String> started = new HashSet<>();
  private long bytes;
  private long lastPrint;

  PushProgress(PrintStream out, List<Tensor> tensors, String waitingFor) {
    this.out = out;
    this.totalBytes = tensors.stream().mapToLong(t -> t.spec().byteLength()).sum();
    this.totalTensors = tensors.size();
    this.waitingFor = waitingFor;
    this.lastPrint = start; // the first line after a second: a refused call prints none
  }

  /** The same tensors, whose reads are counted. */
  List<Tensor> counting(List<Tensor> tensors) {
    List<Tensor> out = new ArrayList<>(tensors.size());
    for (Tensor t : tensors) {
      TensorSource src = t.source();
      String name = t.spec().name();
      out.add(new Tensor(t.spec(), (offset, length) -> {
        var window = src.window(offset, length);
        sent(name, length);
        return window;
      }));
    }
    return out;
  }

  private synchronized void sent(String name, int length) {
    started.add(name);
    bytes += length;
    long now = System.nanoTime();
    boolean done = bytes >= totalBytes && started.size() == totalTensors;
    if (!done && now - lastPrint < 1_000_000_000L) {
      return;
    }
    lastPrint = now;
    double seconds = Math.max(1e-9, (now - start) / 1e9);
    out.printf("[%d/%d tensors, %s of %s, %.2f GB/s]%n", started.size(), totalTensors,
        ByteSizeConverter.format(bytes), ByteSizeConverter.format(totalBytes), bytes / seconds / 1e9);
    if (done) {
      out.println(waitingFor);
    }
  }
}
