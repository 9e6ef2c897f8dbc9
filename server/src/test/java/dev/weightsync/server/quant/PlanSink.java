package dev.weightsync.server.quant;

import dev.weightsync.core.quant.TensorPlan;
import dev.weightsync.core.tensor.TensorSink;
import java.nio.ByteBuffer;
import java.util.HashMap;
import java.util.Map;

/** The output tensors of one plan, in memory, as a quantizer wrote them. */
final class PlanSink implements TensorSink {
  final Map<String, byte[]> bytes = new HashMap<>();

  PlanSink(TensorPlan p) {
    p.outputs().forEach(t -> bytes.put(t.name(), new byte[(int) t.byteLength()]));
  }

  @Override
  public synchronized void write(String name, long offset, ByteBuffer data) {
    data.duplicate().get(bytes.get(name), (int) offset, data.remaining());
  }
}
