package dev.weightsync.cli;

import dev.weightsync.cli.engine.StandInEngine;
import dev.weightsync.client.WeightSyncClient;
import dev.weightsync.core.checkpoint.CheckpointConverter;
import dev.weightsync.core.checkpoint.CheckpointFolder;
import dev.weightsync.core.quant.CpuQuantizer;
import dev.weightsync.core.tensor.TensorSpec;
import dev.weightsync.proto.v1.UpdateWeightsResponse;
import dev.weightsync.server.Sidecar;
import dev.weightsync.server.config.ConfigLoader;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code weightsync demo}: a sidecar and the stand-in engine in this process; a small generated
 * model pushed through them; timings, what the engine was asked and loaded, and a check that the
 * staged folder equals what {@code convert} writes.
 */
@Command(name = "demo", mixinStandardHelpOptions = true,
    description = "Start a sidecar and a stand-in engine (SGLang's routes, or vLLM's), push a small generated model, show what happened.")
final class DemoCommand implements Callable<Integer> {

  @Option(names = "--format", defaultValue = "fp8-block", description = "Output format (default ${DEFAULT-VALUE}).")
  String format;

  @Option(names = "--engine", defaultValue = "sglang", paramLabel = "sglang|vllm",
      description = "Whose routes the stand-in engine speaks (default ${DEFAULT-VALUE}).")
  String engineKind;

  @picocli.CommandLine.Spec picocli.CommandLine.Model.CommandSpec spec;

  @Option(names = "--layers", defaultValue = "4", description = "Decoder layers of the generated model (default ${DEFAULT-VALUE}).")
  int layers;

  @Option(names = "--versions", defaultValue = "2", description = "Versions to push (default ${DEFAULT-VALUE}).")
  int versions;

  @Option(names = "--keep", description = "Keep the temporary folder (model, staging) and print it.")
  boolean keep;

  @Override
  public Integer call() throws Exception {
    Path work = Files.createTempDirectory("weightsync-demo-");
    try {
      Path model = Files.createDirectories(work.resolve("model"));
      List<TensorSpec> tensors = DemoModel.tensors(layers, 512, 1408, 4096);
      DemoModel.write(model, tensors, 1);
      long bytes = tensors.stream().mapToLong(TensorSpec::byteLength).sum();
      System.out.printf("generated a %d-layer BF16 model: %d tensors, %s, in %s%n", layers,
          tensors.size(), ByteSizeConverter.format(bytes), model);
      StandInEngine.Api api = switch (engineKind) {
        case "sglang" -> StandInEngine.Api.SGLANG;
        case "vllm" -> StandInEngine.Api.VLLM;
        default -> throw new picocli.CommandLine.ParameterException(spec.commandLine(),
            "--engine must be sglang or vllm, got " + engineKind);
      };
      try (StandInEngine engine = new StandInEngine(0, null, api).start();
          Sidecar sidecar = new Sidecar(ConfigLoader.load(null, Map.of(), Map.of(
              "port", 0, "metrics-port", -1, "format", format,
              "staging-dir", work.resolve("staging").toString(),
              engineKind + "-url", List.of(engine.url()), "part-timeout", "60s"))).start();
          WeightSyncClient client = WeightSyncClient.connect("127.0.0.1:" + sidecar.port())) {
        System.out.printf("sidecar on 127.0.0.1:%d (%s), stand-in %s engine at %s%n",
            sidecar.port(), format, engineKind, engine.url());
        UpdateWeightsResponse last = null;
        for (int v = 1; v <= versions; v++) {
          engine.clearCalls();
          long start = System.nanoTime();
          last = client.pushFolder(model, "step-" + v, 0, 1);
          double seconds = (System.nanoTime() - start) / 1e9;
          System.out.printf("%n--- push of version step-%d: %.3f s as the trainer saw it (%.2f GB/s of BF16)%n",
              v, seconds, bytes / seconds / 1e9);
          System.out.print(Reports.response(last));
          if (v == 1) {
            System.out.println(explainCounts(Path.of(last.getStagedPath()), last.getTensorsIn()));
          }
          System.out.println("engine calls, in order: " + engine.routes());
          System.out.printf("engine now serves '%s' from %s (%d tensors read), paused: %s%n",
              engine.weightVersion(), engine.modelPath(), engine.loadedTensors(), engine.paused());
        }
        Path reference = work.resolve("convert-output");
        try (CpuQuantizer q = new CpuQuantizer(Runtime.getRuntime().availableProcessors())) {
          new CheckpointConverter(q, sidecar.scheme(), 1L << 30).convert(model, reference, false, null);
        }
        int same = compare(Path.of(last.getStagedPath()), reference);
        System.out.printf("%nstaged folder equals `weightsync convert` output tensor by tensor: %d tensors identical%n", same);
      }
      if (keep) {
        System.out.println("kept " + work);
      }
      return 0;
    } finally {
      if (!keep) {
        CheckpointConverter.deleteTree(work);
      }
    }
  }

  /** Why more tensors come out than went in: each quantized weight brings its scales. */
  static String explainCounts(Path staged, int in) throws java.io.IOException {
    try (CheckpointFolder f = CheckpointFolder.open(staged)) {
      List<String> names = f.tensors().stream().map(TensorSpec::name).toList();
      long fp8 = names.stream().filter(n -> n.endsWith("_scale_inv")).count();
      long int4 = names.stream().filter(n -> n.endsWith(".weight_packed")).count();
      long quantized = fp8 + int4;
      return String.format("why %d out of %d in: %d weights quantized, each with its scales (%s),"
              + " and %d passed through as they are (norms, embedding, lm_head, router...)",
          names.size(), in, quantized, fp8 > 0 ? "X.weight + X.weight_scale_inv"
              : "X.weight_packed + X.weight_scale + X.weight_shape", in - quantized);
    }
  }

  /** The number of identical tensors; throws on the first difference. */
  private static int compare(Path staged, Path reference) throws Exception {
    try (CheckpointFolder a = CheckpointFolder.open(staged);
        CheckpointFolder b = CheckpointFolder.open(reference)) {
      List<TensorSpec> ta = a.tensors().stream().sorted(java.util.Comparator.comparing(TensorSpec::name)).toList();
      List<TensorSpec> tb = b.tensors().stream().sorted(java.util.Comparator.comparing(TensorSpec::name)).toList();
      if (!ta.equals(tb)) {
        throw new IllegalStateException("the staged folder holds other tensors than convert writes");
      }
      for (TensorSpec t : ta) {
        ByteBuffer x = a.source(t.name()).window(0, (int) t.byteLength());
        ByteBuffer y = b.source(t.name()).window(0, (int) t.byteLength());
        if (!x.equals(y)) {
          throw new IllegalStateException("tensor " + t.name() + " differs from convert's output");
        }
      }
      if (!a.config().get("quantization_config").equals(b.config().get("quantization_config"))) {
        throw new IllegalStateException("quantization_config differs from convert's output");
      }
      return ta.size();
    }
  }
}
