package dev.weightsync.server.quant;

import dev.weightsync.core.quant.CpuQuantizer;
import dev.weightsync.core.quant.Quantizer;
import java.util.logging.Logger;

/** Chooses the quantizer for {@code --device auto|cpu|cuda[:N]}. */
public final class Quantizers {
  private Quantizers() {}

  private static final Logger LOG = Logger.getLogger(Quantizers.class.getName());

  /** Device buffers of the GPU quantizer (input; outputs are allocated to match). */
  public static final long GPU_BUFFER_BYTES = 512L << 20;

  /** The chosen quantizer and, when {@code auto} fell back to the CPU, why. */
  public record Choice(Quantizer quantizer, String note) {}

  public static Choice create(String device, int cpuThreads) {
    String d = device == null ? "auto" : device.trim().toLowerCase(java.util.Locale.ROOT);
    if (d.equals("cpu")) {
      return new Choice(new CpuQuantizer(cpuThreads), "");
    }
    if (d.equals("auto")) {
      try {
        return new Choice(new CudaQuantizer(0, GPU_BUFFER_BYTES, cpuThreads), "");
      } catch (IllegalStateException | LinkageError e) {
        String note = "no usable GPU (" + rootMessage(e) + "); quantizing on the CPU";
        LOG.info(note);
        return new Choice(new CpuQuantizer(cpuThreads), note);
      }
    }
    if (d.equals("cuda") || d.startsWith("cuda:")) {
      int ordinal;
      try {
        ordinal = d.equals("cuda") ? 0 : Integer.parseInt(d.substring(5));
      } catch (NumberFormatException e) {
        throw new IllegalArgumentException("--device " + device + ": expected cuda:N");
      }
      try {
        return new Choice(new CudaQuantizer(ordinal, GPU_BUFFER_BYTES, cpuThreads), "");
      } catch (LinkageError e) {
        throw new IllegalStateException("--device " + device + ": the CUDA driver library could"
            + " not be loaded (" + rootMessage(e) + ")");
      }
    }
    throw new IllegalArgumentException("--device must be auto, cpu, cuda or cuda:N, got " + device);
  }

  private static String rootMessage(Throwable t) {
    while (t.getCause() != null && t.getCause() != t) {
      t = t.getCause();
    }
    String m = String.valueOf(t.getMessage());
    int nl = m.indexOf('\n');
    return t.getClass().getSimpleName() + ": " + (nl < 0 ? m : m.substring(0, nl));
  }
}
