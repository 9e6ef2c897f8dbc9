package dev.weightsync.core.checkpoint;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.weightsync.core.quant.AlreadyQuantized;
import dev.weightsync.core.quant.Format;
import dev.weightsync.core.quant.QuantError;
import dev.weightsync.core.quant.QuantQueue;
import dev.weightsync.core.quant.QuantScheme;
import dev.weightsync.core.quant.QuantizationConfigs;
import dev.weightsync.core.quant.Quantizer;
import dev.weightsync.core.quant.TensorPlan;
import dev.weightsync.core.quant.TensorSelector;
import dev.weightsync.core.tensor.TensorSpec;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Converts a BF16 checkpoint folder into a quantized one (the offline {@code convert} job). The
 * output is written under a temporary name beside the destination and moved into place only when
 * complete, so a failure never leaves a partial checkpoint.
 */
public final class CheckpointConverter {

  /** Tensors in the quantizer at once: lets a GPU overlap copies in, kernels and copies out. */
  private static final int IN_FLIGHT = 3;

  /** Told after each tensor; called on the converting thread. */
  public interface Progress {
    void tensorDone(String name, int done, int total, long bytesDone, long bytesTotal);
  }

  /** What a conversion did. */
  public record Result(int tensorsIn, int tensorsOut, long bytesIn, long bytesOut,
      int quantized, QuantError error, List<String> indivisible) {}

  private final Quantizer quantizer;
  private final QuantScheme scheme;
  private final long maxShardBytes;
  private final FolderPermissions permissions;

  public CheckpointConverter(Quantizer quantizer, QuantScheme scheme, long maxShardBytes) {
    this(quantizer, scheme, maxShardBytes, FolderPermissions.DEFAULT);
  }

  /** As above, the output folder and its files given {@code permissions}. */
  public CheckpointConverter(Quantizer quantizer, QuantScheme scheme, long maxShardBytes,
      FolderPermissions permissions) {
    this.quantizer = quantizer;
    this.scheme = scheme;
    this.maxShardBytes = maxShardBytes;
    this.permissions = permissions;
  }

  /**
   * Converts {@code inputDir} into {@code outputDir}. An existing non-empty output folder is
   * refused unless {@code replace} is set; even then it is replaced only once the new checkpoint is
   * complete.
   */
  public Result convert(Path inputDir, Path outputDir, boolean replace, Progress progress)
      throws IOException {
    refuseOverlap(inputDir, outputDir);
    if (Files.exists(outputDir) && !Files.isDirectory(outputDir)) {
      throw new IOException(outputDir + ": exists and is not a folder");
    }
    if (Files.isDirectory(outputDir) && !replace) {
      try (var s = Files.list(outputDir)) {
        if (s.findAny().isPresent()) {
          throw new IOException(outputDir + ": output folder is not empty (--force replaces it)");
        }
      }
    }
    Path parent = outputDir.toAbsolutePath().getParent();
    Files.createDirectories(parent);
    Path temp = Files.createTempDirectory(parent, "." + outputDir.getFileName() + ".partial-");
    try (CheckpointFolder in = CheckpointFolder.open(inputDir)) {
      Result r = write(in, temp, progress);
      permissions.applyTree(temp);
      deleteTree(outputDir);
      Files.move(temp, outputDir, StandardCopyOption.ATOMIC_MOVE);
      return r;
    } catch (IOException | RuntimeException e) {
      deleteTree(temp);
      throw e;
    }
  }

  /**
   * The output must be neither the input nor inside it nor around it, whatever --force says:
   * replacing the output would delete the input (or the output would be read while written).
   */
  private static void refuseOverlap(Path inputDir, Path outputDir) throws IOException {
    if (!Files.isDirectory(inputDir)) {
      throw new IOException(inputDir + ": not a directory");
    }
    Path in = inputDir.toRealPath();
    Path out = realPathOfPossiblyMissing(outputDir);
    String why = out.equals(in) ? "is the input folder"
        : out.startsWith(in) ? "is inside the input folder " + in
        : in.startsWith(out) ? "contains the input folder " + in : null;
    if (why != null) {
      throw new IOException("output folder " + outputDir + " " + why
          + ": refused, since writing it would destroy the input (choose another --output-dir)");
    }
  }

  /** The real path of {@code p}'s nearest existing ancestor, with the missing rest appended. */
  private static Path realPathOfPossiblyMissing(Path p) throws IOException {
    Path abs = p.toAbsolutePath().normalize();
    Path existing = abs;
    while (existing != null && !Files.exists(existing)) {
      existing = existing.getParent();
    }
    return existing == null ? abs : existing.toRealPath().resolve(existing.relativize(abs));
  }

  private Result write(CheckpointFolder in, Path dir, Progress progress) throws IOException {
    if (scheme.format() != Format.BF16) {
      refuseQuantizedInput(in);
    }
    TensorSelector selector = new TensorSelector(scheme);
    List<TensorPlan> plans = new ArrayList<>();
    List<TensorSpec> outputs = new ArrayList<>();
    Map<String, String> producedBy = new HashMap<>();
    long bytesIn = 0;
    for (TensorSpec t : in.tensors()) {
      TensorPlan p = selector.plan(t);
      plans.add(p);
      for (TensorSpec o : p.outputs()) {
        String other = producedBy.putIfAbsent(o.name(), t.name());
        if (other != null) {
          throw new IOException(in.dir() + ": tensors " + other + " and " + t.name()
              + " would both write the output tensor " + o.name());
        }
      }
      outputs.addAll(p.outputs());
      bytesIn += t.byteLength();
    }
    int quantized = (int) plans.stream().filter(p -> !(p instanceof TensorPlan.PassThrough)).count();
    long total = bytesIn;
    try (CheckpointWriter out = new CheckpointWriter(dir, outputs, maxShardBytes)) {
      long[] done = {0, 0}; // tensors, bytes
      QuantQueue queue = new QuantQueue(quantizer, IN_FLIGHT, (p, e) -> {
        done[0]++;
        done[1] += p.input().byteLength();
        if (progress != null) {
          progress.tensorDone(p.input().name(), (int) done[0], plans.size(), done[1], total);
        }
      });
      QuantError error;
      try {
        for (TensorPlan p : plans) {
          queue.submit(p, in.source(p.input().name()), out);
        }
        error = queue.finish();
      } catch (IOException | RuntimeException e) {
        queue.abandon(); // let what is in flight finish before the folder is deleted
        throw e;
      }
      ObjectNode config = QuantizationConfigs.outputConfig(in.config(), scheme, plans);
      out.finish(config, true);
      out.copyOtherFiles(in);
      return new Result(plans.size(), outputs.size(), bytesIn, out.totalSize(), quantized, error,
          QuantizationConfigs.indivisible(plans));
    }
  }

  private static void refuseQuantizedInput(CheckpointFolder in) throws IOException {
    String why = AlreadyQuantized.configReason(in.config());
    for (TensorSpec t : in.tensors()) {
      if (why == null) {
        why = AlreadyQuantized.reason(t.name(), t.dtype());
      }
    }
    if (why != null) {
      throw new IOException(in.dir() + ": " + why);
    }
  }

  /**
   * Deletes a folder and everything under it; quiet when it is already gone. Nothing may write
   * into the folder meanwhile (the sidecar's version folders see to that: {@code VersionFolder}).
   */
  public static void deleteTree(Path root) throws IOException {
    if (!Files.exists(root)) {
      return;
    }
    try (var s = Files.walk(root)) {
      for (Path p : s.sorted(java.util.Comparator.reverseOrder()).toList()) {
        Files.deleteIfExists(p);
      }
    } catch (java.io.UncheckedIOException e) {
      throw e.getCause();
    }
  }
}
