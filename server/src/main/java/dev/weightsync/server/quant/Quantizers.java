package dev.weightsync.server.quant;

import dev.weightsync.core.quant.CpuQuantizer;
import dev.weightsync.core.quant.Quantizer;
import dev.weightsync.server.quant.cuda.CudaDevices;
import dev.weightsync.server.quant.cuda.CudaQuantizer;
import java.util.logging.Logger;

/** Chooses the quantizer for {@code --device auto|cpu|cuda[:N]|cuda:all}. */
public final class Quantizers {
  private Quantizers() {}

  private static final Logger LOG = Logger.getLogger(Quantizers.class.getName());

  /** Input bytes of one band on the GPU (a slot's buffers; outputs are sized to match). */
  public static final long GPU_BAND_BYTES = 64L << 20;
  /**
   * Bands on the GPU at once by default ({@code gpu-slots}; 4 measured best on an H200 for bytes:
   * 1.10x the bare copy in, 3 gave 1.17x).
   */
  public static final int GPU_SLOTS = 4;

  /** The chosen quantizer and, when it is not the GPU asked for, why. */
  public record Choice(Quantizer quantizer, String startNote) {
    /** Why the CPU quantizes (empty when nothing fell back), including a GPU failure since start. */
    public String note() {
      if (quantizer instanceof FallbackQuantizer f && !f.note().isEmpty()) {
        return f.note();
      }
      if (quantizer instanceof MultiGpuQuantizer m && !m.note().isEmpty()) {
        return m.note();
      }
      return startNote;
    }
  }

  /**
   * {@code --device}, with the CPU redoing GPU failures when {@code fallBack} ({@code gpu-failure:
   * cpu}), {@code gpuSlots} bands on a GPU at once, and for {@code cuda:all} the GPU that
   * quantizes bytes ({@code bytesGpu}: an ordinal, or {@link MultiGpuQuantizer#LEAST_BUSY}).
   */
  public static Choice create(String device, int cpuThreads, boolean fallBack, int gpuSlots,
      int bytesGpu) {
    String d = device == null ? "auto" : device.trim().toLowerCase(java.util.Locale.ROOT);
    if (d.equals("cpu")) {
      return new Choice(new CpuQuantizer(cpuThreads), "");
    }
    if (d.equals("auto")) {
      try {
        return new Choice(gpu(0, cpuThreads, fallBack, gpuSlots), "");
      } catch (IllegalStateException | LinkageError e) {
        String note = "no usable GPU (" + rootMessage(e) + "); quantizing on the CPU";
        LOG.info(note);
        return new Choice(new CpuQuantizer(cpuThreads), note);
      }
    }
    if (d.equals("cuda:all")) {
      try {
        JCudaNatives.load();
        return new Choice(new MultiGpuQuantizer(new CudaDevices(GPU_BAND_BYTES, gpuSlots,
            cpuThreads), cpuThreads, fallBack, bytesGpu), "");
      } catch (LinkageError e) {
        throw new IllegalStateException("--device " + device + ": the CUDA driver library could"
            + " not be loaded (" + rootMessage(e) + ")");
      }
    }
    if (d.equals("cuda") || d.startsWith("cuda:")) {
      int ordinal;
      try {
        ordinal = d.equals("cuda") ? 0 : Integer.parseInt(d.substring(5));
      } catch (NumberFormatException e) {
        throw new IllegalArgumentException("--device " + device + ": expected cuda:N or cuda:all");
      }
      try {
        return new Choice(gpu(ordinal, cpuThreads, fallBack, gpuSlots), "");
      } catch (LinkageError e) {
        throw new IllegalStateException("--device " + device + ": the CUDA driver library could"
            + " not be loaded (" + rootMessage(e) + ")");
      }
    }
    throw new IllegalArgumentException("--device must be auto, cpu, cuda, cuda:N or cuda:all, got "
        + device);
  }

  public static Choice create(String device, int cpuThreads) {
    return create(device, cpuThreads, true, GPU_SLOTS, MultiGpuQuantizer.LEAST_BUSY);
  }

  private static Quantizer gpu(int ordinal, int cpuThreads, boolean fallBack, int slots) {
    JCudaNatives.load();
    CudaQuantizer cuda = new CudaQuantizer(ordinal, GPU_BAND_BYTES, slots, cpuThreads);
    return new FallbackQuantizer(cuda, new CpuQuantizer(cpuThreads), fallBack);
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
