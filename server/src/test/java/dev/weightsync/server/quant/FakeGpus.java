package dev.weightsync.server.quant;

import dev.weightsync.core.quant.CpuQuantizer;
import dev.weightsync.core.quant.QuantError;
import dev.weightsync.core.quant.TensorPlan;
import dev.weightsync.core.tensor.PageLocker;
import dev.weightsync.core.tensor.TensorSink;
import dev.weightsync.core.tensor.TensorSource;
import dev.weightsync.core.tensor.TensorSpec;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A node's GPUs without a GPU: each "device" quantizes on the CPU (so its bytes are the oracle's)
 * and reads CUDA IPC buckets from "device memory" that lives in this object: an allocation is
 * registered on one GPU's UUID under a 64-byte handle, as a trainer's cudaIpcGetMemHandle would
 * give it, and only that GPU can open the handle. Each device counts what it did, can be held
 * busy (a latch) and can be broken, like a lost CUDA context.
 */
final class FakeGpus implements GpuDevices {

  final List<String> uuids;
  final List<Device> opened = new ArrayList<>();
  final Set<Integer> cannotOpen = new HashSet<>();
  final Set<Integer> broken = ConcurrentHashMap.newKeySet();
  /** While set for an ordinal, that device's tensors wait for it (after counting down entered). */
  final Map<Integer, CountDownLatch> hold = new ConcurrentHashMap<>();
  final CountDownLatch entered = new CountDownLatch(1);
  /** While set, opening a device waits for it (after counting down opening), as a slow cuCtxCreate. */
  volatile CountDownLatch openGate;
  final CountDownLatch opening = new CountDownLatch(1);
  private final Map<String, Allocation> memory = new ConcurrentHashMap<>();

  private record Allocation(String uuid, ByteBuffer bytes) {}

  FakeGpus(String... uuids) {
    this.uuids = List.of(uuids);
  }

  /** Places {@code bytes} in the memory of GPU {@code uuid}; returns the allocation's handle. */
  byte[] allocate(String uuid, ByteBuffer bytes) {
    byte[] handle = new byte[CudaIpcReader.HANDLE_BYTES];
    byte[] id = ("h" + memory.size()).getBytes(java.nio.charset.StandardCharsets.US_ASCII);
    System.arraycopy(id, 0, handle, 0, id.length);
    memory.put(new String(handle, java.nio.charset.StandardCharsets.ISO_8859_1),
        new Allocation(uuid, bytes));
    return handle;
  }

  @Override
  public List<String> uuids() {
    return uuids;
  }

  @Override
  public DeviceQuantizer open(int ordinal) {
    CountDownLatch gate = openGate;
    if (gate != null) {
      opening.countDown();
      try {
        gate.await();
      } catch (InterruptedException e) {
        throw new IllegalStateException(e);
      }
    }
    return opened(ordinal);
  }

  private synchronized DeviceQuantizer opened(int ordinal) {
    if (cannotOpen.contains(ordinal)) {
      throw new IllegalStateException("CUDA device " + ordinal + " is not usable:"
          + " CUDA_ERROR_OUT_OF_MEMORY");
    }
    Device d = new Device(ordinal);
    opened.add(d);
    return d;
  }

  /** The opened device of this ordinal, or null. */
  synchronized Device device(int ordinal) {
    return opened.stream().filter(d -> d.ordinal == ordinal).findFirst().orElse(null);
  }

  final class Device implements DeviceQuantizer {
    final int ordinal;
    final AtomicInteger tensors = new AtomicInteger();
    final AtomicInteger buckets = new AtomicInteger();
    final AtomicInteger handles = new AtomicInteger();
    /** Regions page-locked through this device and not yet unlocked. */
    final AtomicInteger pageLocks = new AtomicInteger();
    volatile boolean closed;
    private final CpuQuantizer cpu = new CpuQuantizer(1);

    Device(int ordinal) {
      this.ordinal = ordinal;
    }

    @Override
    public String device() {
      return "cuda:" + ordinal;
    }

    @Override
    public QuantError quantize(TensorPlan plan, TensorSource source, TensorSink sink)
        throws IOException {
      tensors.incrementAndGet();
      CountDownLatch h = hold.get(ordinal);
      if (h != null) {
        entered.countDown();
        try {
          h.await();
        } catch (InterruptedException e) {
          throw new IOException(e);
        }
      }
      if (broken.contains(ordinal)) {
        throw new GpuFailureException("CUDA error on cuda:" + ordinal
            + ": CUDA_ERROR_ILLEGAL_ADDRESS", null);
      }
      return cpu.quantize(plan, source, sink);
    }

    /** Locks anything while open, as the driver pins a mapping. */
    @Override
    public PageLocker pageLocker() {
      return region -> {
        if (closed) {
          return null;
        }
        pageLocks.incrementAndGet();
        return pageLocks::decrementAndGet;
      };
    }

    @Override
    public boolean serves(String gpuUuid) {
      return GpuUuids.same(gpuUuid, uuids.get(ordinal));
    }

    @Override
    public String gpus() {
      return device() + " " + uuids.get(ordinal);
    }

    @Override
    public int openHandles() {
      return handles.get();
    }

    @Override
    public Session openSession() {
      return new Session() {
        private final Set<String> held = new HashSet<>();

        @Override
        public QuantError quantizeBucket(String gpuUuid, byte[] handle, long handleOffset,
            long byteLength, List<BucketTensor> list, TensorSink sink) throws IOException {
          String key = new String(handle, java.nio.charset.StandardCharsets.ISO_8859_1);
          Allocation a = memory.get(key);
          if (a == null || !GpuUuids.same(a.uuid(), uuids.get(ordinal))) {
            throw new IllegalArgumentException("CUDA refused the IPC handle on " + gpus());
          }
          if (held.add(key)) {
            handles.incrementAndGet();
          }
          buckets.incrementAndGet();
          QuantError total = QuantError.NONE;
          for (BucketTensor t : list) {
            TensorSpec in = t.plan().input();
            ByteBuffer at = a.bytes().duplicate()
                .position(Math.toIntExact(handleOffset + t.offset()))
                .limit(Math.toIntExact(handleOffset + t.offset() + in.byteLength())).slice()
                .order(java.nio.ByteOrder.LITTLE_ENDIAN);
            total = total.plus(quantize(t.plan(), TensorSource.of(at), sink));
          }
          return total;
        }

        @Override
        public void close() {
          handles.addAndGet(-held.size());
          held.clear();
        }
      };
    }

    @Override
    public void close() {
      closed = true;
      cpu.close();
    }
  }
}
