package dev.weightsync.server.ingest;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.weightsync.core.quant.AlreadyQuantized;
import dev.weightsync.core.quant.Format;
import dev.weightsync.core.quant.NonFiniteScan;
import dev.weightsync.core.quant.NonFiniteWeightException;
import dev.weightsync.core.quant.QuantError;
import dev.weightsync.core.quant.QuantQueue;
import dev.weightsync.core.quant.RowBand;
import dev.weightsync.core.quant.Quantizer;
import dev.weightsync.core.quant.TensorPlan;
import dev.weightsync.core.quant.TensorSelector;
import dev.weightsync.core.tensor.DType;
import dev.weightsync.core.tensor.FileRegionSource;
import dev.weightsync.core.tensor.TensorSpec;
import dev.weightsync.proto.v1.Commit;
import dev.weightsync.proto.v1.CudaBucket;
import dev.weightsync.proto.v1.CudaTensor;
import dev.weightsync.proto.v1.Header;
import dev.weightsync.proto.v1.TensorChunk;
import dev.weightsync.server.pipeline.PartResult;
import dev.weightsync.server.metrics.SyncMetrics;
import dev.weightsync.server.quant.CudaIpcReader;
import dev.weightsync.server.pipeline.VersionCoordinator;
import dev.weightsync.server.stage.ShardSet;
import dev.weightsync.server.stage.ShardSpool;
import dev.weightsync.server.stage.StagingSpace;
import io.grpc.Status;
import io.grpc.StatusException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.atomic.AtomicLong;
import java.util.regex.Pattern;

/**
 * Receives one part of one version from one stream: validates every message, assembles tensors in
 * a spool file beside the staged shard (so neither heap nor direct memory grows with the model),
 * quantizes each band of rows as soon as its bytes are there (the first 128-row block of an FP8
 * tensor need not wait for the rest of it), and writes the result straight into the part's shard.
 *
 * <p>Not thread-safe: the service calls it from one sequential executor per stream.
 */
final class PartReceiver {

  static final int MAX_CHUNK_BYTES = 4 << 20;
  /** Bytes read back at a time to scan a direct tensor whose chunks were cut inside elements. */
  static final int SCAN_WINDOW = 4 << 20;
  static final int MAX_NAME_LENGTH = 1024;
  /**
   * Disjoint received ranges a stream may hold across its incomplete tensors (about 100 bytes of
   * heap each): chunks sent in order are one range per tensor, so only a caller scattering chunks
   * on purpose comes near it, and its heap stays bounded.
   */
  static final int MAX_OPEN_RANGES = 16384;
  static final int MAX_PARTS = 4096;
  /** Bands (or whole tensors) being quantized while the next bytes arrive. */
  static final int QUANTIZE_IN_FLIGHT = 4;
  /**
   * Input bytes in a band of rows handed to the quantizer before the tensor is complete: large
   * enough that a GPU call is mostly transfer and kernel, small enough to start early.
   */
  static final long BAND_BYTES = 16 << 20;
  /**
   * Files a part's outputs are spread over once it sends CUDA buckets: the GPU's slots copy
   * results out side by side, and one file would serialize them (see ShardSet).
   */
  static final int BUCKET_SHARD_FILES = 8;
  /** A version names a staged folder: never "." or "..", nor a hidden (temporary) name. */
  private static final Pattern VERSION = Pattern.compile("[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}");

  /** A tensor whose bytes are arriving. */
  private static final class Incoming {
    final TensorSpec spec;
    final TensorPlan plan;
    /**
     * Passed through unchanged: its chunks go straight to their place in the staged shard, with
     * no spool (one copy of the bytes instead of three).
     */
    final boolean direct;
    final long spoolStart;
    /** Byte ranges received so far, merged; forgotten once the tensor is complete. */
    final ByteRanges ranges = new ByteRanges();
    long received;
    /** Rows already handed to the quantizer. */
    long rowsStarted;
    boolean done;
    /**
     * A direct tensor got a chunk cut inside an element: its staged bytes are scanned for NaN and
     * infinity once complete, instead of chunk by chunk.
     */
    boolean scanWhenComplete;

    Incoming(TensorSpec spec, TensorPlan plan, boolean direct, long spoolStart) {
      this.spec = spec;
      this.plan = plan;
      this.direct = direct;
      this.spoolStart = spoolStart;
    }
  }

  private final VersionCoordinator coordinator;
  private final TensorSelector selector;
  private final IngestLimits limits;
  private final SyncMetrics metrics;
  private final long startNanos = System.nanoTime();
  private final Map<String, Incoming> tensors = new LinkedHashMap<>();
  private final Set<String> claimed = new HashSet<>();
  private final List<TensorPlan> plans = new ArrayList<>();
  private VersionCoordinator.Part part;
  /** What a header that was refused asked for, for log lines (the part is null then). */
  private String refusedHeader;
  private FileChannel spool;
  private Path spoolPath;
  /** Bytes written into the spool, read by the staging ledger from other streams' threads. */
  private final AtomicLong spooled = new AtomicLong();
  private final StagingSpace space;
  /** This part's share of the staging ledger, from the header to commit or discard. */
  private StagingSpace.Reservation room;
  private ShardSet shard;
  private long spoolLength;
  private int open;
  /** Ranges held by this stream's incomplete tensors, bounded by MAX_OPEN_RANGES. */
  private int openRanges;
  private long bytesIn;
  /** Bytes counted towards the version's size by this part (given back if the part fails). */
  private long reservedBytes;
  private static final ObjectMapper JSON = new ObjectMapper();
  private final String role;
  private final boolean acceptsRelayed;
  private boolean relayed;
  private ObjectNode relayedConfig;
  /** Tensors being quantized while the next ones arrive (a GPU overlaps them). */
  private final QuantQueue quantizing;
  /** What the header declared its chunks' checksum to be. */
  private ChunkChecksum checksum = ChunkChecksum.CRC32C;
  private final Quantizer quantizer;
  /** CUDA buckets received so far, and the statistics of their tensors. */
  private int buckets;
  private QuantError bucketError = QuantError.NONE;
  /** The trainer's allocations this part has mapped; closed when the part ends either way. */
  private CudaIpcReader.Session ipc;
  private double quantizeSeconds;

  /**
   * @param role this sidecar's role: an engine-side sidecar ({@code engine}) also takes parts
   *     relayed already quantized
   */
  PartReceiver(VersionCoordinator coordinator, Quantizer quantizer, TensorSelector selector,
      IngestLimits limits, StagingSpace space, SyncMetrics metrics, String role) {
    this.space = space;
    this.role = role;
    this.acceptsRelayed = role.equals("engine");
    this.metrics = metrics;
    this.coordinator = coordinator;
    this.selector = selector;
    this.limits = limits;
    this.quantizer = quantizer;
    this.quantizing = new QuantQueue(quantizer, QUANTIZE_IN_FLIGHT, null);
  }

  boolean hasHeader() {
    return part != null;
  }

  /** Whether any tensor (a chunk or a CUDA bucket) has arrived after the header. */
  boolean hasData() {
    return !tensors.isEmpty();
  }

  String describe() {
    if (part != null) {
      return "version " + part.version() + " part " + part.index();
    }
    return refusedHeader != null ? refusedHeader + " (header refused)" : "(no header yet)";
  }

  void header(Header h, dev.weightsync.proto.v1.Format serverFormat) throws StatusException {
    refusedHeader = "version '" + printable(h.getWeightVersion()) + "' part "
        + Integer.toUnsignedString(h.getPartIndex());
    if (part != null) {
      throw invalid("a second header arrived on the stream of " + describe());
    }
    if (!VERSION.matcher(h.getWeightVersion()).matches()) {
      throw invalid("weight_version '" + printable(h.getWeightVersion())
          + "' must be 1-128 characters of A-Z a-z 0-9 . _ - and must not start with '.'");
    }
    // uint32 fields arrive as Java ints: compare unsigned so that 2^31 and above are refused.
    int count = h.getPartCount() == 0 ? 1 : h.getPartCount();
    if (Integer.compareUnsigned(count, MAX_PARTS) > 0) {
      throw invalid("part_count " + Integer.toUnsignedString(count) + " exceeds " + MAX_PARTS);
    }
    if (Integer.compareUnsigned(h.getPartIndex(), count) >= 0) {
      throw invalid("part_index " + Integer.toUnsignedString(h.getPartIndex())
          + " is not below part_count " + count);
    }
    checksum = ChunkChecksum.of(h);
    switch (h.getPayload()) {
      case PAYLOAD_SOURCE -> {
        if (h.getFormat() != dev.weightsync.proto.v1.Format.FORMAT_UNSPECIFIED
            && h.getFormat() != serverFormat) {
          throw Status.FAILED_PRECONDITION.withDescription("the header asks for " + h.getFormat()
              + " but this sidecar serves " + serverFormat + " (configured with --format)")
              .asException();
        }
      }
      case PAYLOAD_QUANTIZED -> {
        if (!acceptsRelayed) {
          throw Status.FAILED_PRECONDITION.withDescription("this sidecar (role " + role
              + ") quantizes source weights itself; already-quantized parts go to engine-side"
              + " sidecars (--role engine)").asException();
        }
        relayed = true;
        relayedConfig = parseRelayedConfig(h.getQuantizationConfigJson());
      }
      default -> throw invalid("unknown payload kind " + h.getPayloadValue());
    }
    part = coordinator.open(h.getWeightVersion(), h.getPartIndex(), count);
    try {
      String base = String.format("model-%05d-of-%05d", part.index() + 1, count);
      spoolPath = part.directory().resolve("." + base + ".incoming");
      spool = FileChannel.open(spoolPath, StandardOpenOption.CREATE_NEW, StandardOpenOption.READ,
          StandardOpenOption.WRITE);
      shard = new ShardSet(part.directory(), base);
      ShardSet staged = shard;
      room = space.open(() -> spooled.get() + staged.written());
    } catch (IOException e) {
      throw Status.INTERNAL.withDescription("cannot create staging files: " + e.getMessage())
          .asException();
    }
    reserve("the staged shard's header", ShardSet.FILE_OVERHEAD);
  }

  void chunk(TensorChunk c) throws StatusException {
    requireHeader("a tensor chunk");
    checkNotAborted();
    Incoming t = tensor(c);
    int length = c.getData().size();
    if (length > MAX_CHUNK_BYTES) {
      throw invalid("tensor " + t.spec.name() + ": chunk of " + length + " bytes exceeds the "
          + MAX_CHUNK_BYTES + "-byte limit");
    }
    long offset = c.getOffset();
    if (offset < 0 || offset + length > t.spec.byteLength() || offset + length < offset) {
      throw invalid("tensor " + t.spec.name() + ": chunk [" + offset + ", " + (offset + length)
          + ") lies outside its " + t.spec.byteLength() + " bytes");
    }
    if (t.done) {
      throw invalid("tensor " + t.spec.name() + ": chunk at offset " + offset
          + " arrived after the tensor was complete");
    }
    // The bytes as the transport received them, one buffer per HTTP/2 frame: never joined.
    List<ByteBuffer> pieces = c.getData().asReadOnlyByteBufferList();
    if (!checksum.matches(pieces, c.getCrc32C())) {
      throw invalid("tensor " + t.spec.name() + ": chunk at offset " + offset + " fails its "
          + checksum.label() + " check (corrupted in transit)");
    }
    if (length == 0 && t.spec.byteLength() != 0) {
      return;
    }
    int rangesBefore = t.ranges.intervals();
    if (!t.ranges.add(offset, length)) {
      throw invalid("tensor " + t.spec.name() + ": chunk at offset " + offset
          + " overlaps bytes already received");
    }
    openRanges += t.ranges.intervals() - rangesBefore;
    if (openRanges > MAX_OPEN_RANGES) {
      throw exhausted("tensor " + t.spec.name() + ": chunk at offset " + offset + " leaves "
          + openRanges + " separate received ranges in this stream's incomplete tensors, over the "
          + MAX_OPEN_RANGES + " allowed: send each tensor's chunks in order");
    }
    try {
      if (t.direct) {
        stage(t, offset, length, pieces);
      } else {
        spool.position(t.spoolStart + offset); // only this stream writes the spool
        ByteBuffer[] data = pieces.toArray(ByteBuffer[]::new);
        for (long left = length; left > 0; ) {
          left -= spool.write(data);
        }
        spooled.addAndGet(length);
      }
    } catch (IOException e) {
      throw Status.INTERNAL.withDescription("cannot " + (t.direct ? "stage" : "spool")
          + " tensor " + t.spec.name() + ": " + e.getMessage()).asException();
    }
    metrics.bytesReceived(length);
    t.received += length;
    if (t.received == t.spec.byteLength()) {
      complete(t);
    } else {
      startBands(t);
    }
  }

  /**
   * Writes a chunk of a direct tensor into the staged shard, after scanning it for NaN and
   * infinity when it holds whole elements (a chunk cut inside an element defers the scan).
   */
  private void stage(Incoming t, long offset, int length, List<ByteBuffer> pieces)
      throws StatusException, IOException {
    int esize = t.spec.dtype().byteSize();
    if (offset % esize == 0 && length % esize == 0) {
      try {
        NonFiniteScan.check(t.spec.name(), t.spec.dtype(), pieces, offset / esize);
      } catch (NonFiniteWeightException e) {
        throw invalid(e.getMessage());
      }
    } else {
      t.scanWhenComplete = true;
    }
    shard.write(t.spec.name(), offset, pieces);
  }

  /** Scans a complete direct tensor's staged bytes for NaN and infinity. */
  private void scanStaged(Incoming t) throws StatusException {
    long length = t.spec.byteLength();
    int esize = t.spec.dtype().byteSize();
    ByteBuffer window = ByteBuffer.allocate((int) Math.min(length, SCAN_WINDOW - SCAN_WINDOW % esize));
    try {
      for (long off = 0; off < length; off += window.capacity()) {
        window.clear().limit((int) Math.min(window.capacity(), length - off));
        shard.read(t.spec.name(), off, window);
        NonFiniteScan.check(t.spec.name(), t.spec.dtype(), window.flip(), off / esize);
      }
    } catch (NonFiniteWeightException e) {
      throw invalid(e.getMessage());
    } catch (IOException e) {
      throw Status.INTERNAL.withDescription("cannot read back staged tensor " + t.spec.name()
          + ": " + e.getMessage()).asException();
    }
  }

  /** Hands the quantizer every whole band of rows that has arrived, while the rest is coming. */
  private void startBands(Incoming t) throws StatusException {
    int multiple = RowBand.rowMultiple(t.plan);
    if (multiple == 0) {
      return;
    }
    long rowBytes = t.spec.cols() * t.spec.dtype().byteSize();
    long bandRows = Math.max(multiple, BAND_BYTES / rowBytes / multiple * multiple);
    long arrived = t.done ? t.spec.byteLength() : t.ranges.prefix();
    while ((t.rowsStarted + bandRows) * rowBytes <= arrived) {
      startRows(t, bandRows);
    }
  }

  private void startRows(Incoming t, long rows) throws StatusException {
    long rowBytes = t.spec.cols() * t.spec.dtype().byteSize();
    long first = t.rowsStarted;
    t.rowsStarted += rows;
    submit(() -> quantizing.submit(t.plan, RowBand.of(t.plan, first, rows),
        FileRegionSource.of(spool, t.spoolStart + first * rowBytes, rows * rowBytes,
            t.spec.name()), shard));
  }

  /** Work handed to the quantizer queue, which may first wait for earlier work to finish. */
  private interface Submission {
    void run() throws IOException;
  }

  /** Runs {@code s}, counting the time ingest waited for the quantizer and mapping its errors. */
  private void submit(Submission s) throws StatusException {
    long start = System.nanoTime();
    try {
      s.run();
    } catch (NonFiniteWeightException e) {
      throw invalid(e.getMessage());
    } catch (IOException | RuntimeException e) {
      throw quantizingFailed(e);
    }
    quantizeSeconds += (System.nanoTime() - start) / 1e9;
  }

  private Incoming tensor(TensorChunk c) throws StatusException {
    Incoming t = tensors.get(c.getName());
    if (t == null) {
      return declare(c.getName(), c.getDtype(), c.getShapeList(), true);
    }
    DType dtype = dtype(c.getName(), c.getDtype());
    long[] shape = c.getShapeList().stream().mapToLong(Long::longValue).toArray();
    if (t.spec.dtype() != dtype || !Arrays.equals(t.spec.shape(), shape)) {
      throw invalid("tensor " + c.getName() + ": chunk says " + dtype + Arrays.toString(shape)
          + " but earlier chunks said " + t.spec.dtype() + Arrays.toString(t.spec.shape()));
    }
    return t;
  }

  private static DType dtype(String tensor, String name) throws StatusException {
    try {
      return DType.parse(name);
    } catch (IllegalArgumentException e) {
      throw invalid("tensor " + printable(tensor) + ": unknown dtype '" + printable(name)
          + "' (known: " + Arrays.stream(DType.values()).map(Enum::name)
              .collect(java.util.stream.Collectors.joining(", ")) + ")");
    }
  }

  /**
   * A tensor name becomes a key of the staged safetensors header and appears in errors and logs:
   * 1-1024 characters, no control characters, and never {@code __metadata__}, the header's own
   * key (a tensor of that name would make the staged file unreadable).
   */
  private static void checkName(String name) throws StatusException {
    if (name.isEmpty() || name.length() > MAX_NAME_LENGTH) {
      throw invalid("tensor names must be 1-" + MAX_NAME_LENGTH + " characters; '"
          + printable(name) + "' has " + name.length());
    }
    if (name.equals("__metadata__")) {
      throw invalid("__metadata__ is the safetensors header's own key, not a tensor name");
    }
    if (name.chars().anyMatch(ch -> ch < 0x20 || ch == 0x7F)) {
      throw invalid("tensor name '" + printable(name) + "' holds control characters");
    }
  }

  /**
   * A tensor seen for the first time: checks it against the limits and the version's other parts
   * and plans it. Its bytes arrive in chunks into the spool ({@code spooled}) or are read from a
   * CUDA bucket.
   */
  private Incoming declare(String name, String dtypeName, List<Long> shapeList, boolean spooled)
      throws StatusException {
    checkName(name);
    DType dtype = dtype(name, dtypeName);
    long[] shape = shapeList.stream().mapToLong(Long::longValue).toArray();
    TensorSpec spec;
    try {
      spec = new TensorSpec(name, dtype, shape);
    } catch (IllegalArgumentException e) {
      throw invalid(e.getMessage());
    }
    if (!relayed && selector.scheme().format() != Format.BF16) {
      String already = AlreadyQuantized.reason(name, dtype);
      if (already != null) {
        throw invalid(already); // before any byte of this part reaches the engine's folder
      }
    }
    checkTensorSize(spec);
    if (!part.claimTensor(name)) {
      throw invalid("tensor " + name + " was already sent in another part of version "
          + part.version());
    }
    claimed.add(name);
    if (part.tensorCount() > limits.maxTensors()) {
      throw exhausted("tensor " + name + " is one more than the " + limits.maxTensors()
          + " tensors a version may have (max-tensors)");
    }
    if (!part.reserveBytes(spec.byteLength(), limits.maxVersionBytes())) {
      throw exhausted("tensor " + name + " would take version " + part.version() + " past "
          + limits.maxVersionBytes() + " bytes (max-version-bytes)");
    }
    reservedBytes += spec.byteLength();
    if (spooled && open >= limits.maxOpenTensors()) {
      throw Status.RESOURCE_EXHAUSTED.withDescription("tensor " + name + " starts while "
          + open + " tensors are incomplete (max-open-tensors=" + limits.maxOpenTensors()
          + "): send tensors one after another").asException();
    }
    // Relayed tensors are already quantized (FP8/INT4 bytes, scales): staged as they arrive.
    TensorPlan plan = relayed ? new TensorPlan.PassThrough(spec, false) : selector.plan(spec);
    boolean direct = spooled && plan instanceof TensorPlan.PassThrough;
    reserveRoom(spec, plan, spooled && !direct);
    shard.allocate(plan.outputs());
    plans.add(plan);
    Incoming t = new Incoming(spec, plan, direct, spoolLength);
    if (spooled) {
      open++;
    }
    if (spooled && !direct) {
      spoolLength += spec.byteLength();
    }
    tensors.put(name, t);
    bytesIn += spec.byteLength();
    if (spooled && spec.byteLength() == 0) {
      complete(t);
    }
    return t;
  }

  /**
   * A CUDA IPC bucket: its tensors are quantized straight from the trainer's GPU memory, and the
   * handle is closed, before this returns (the trainer may then reuse the memory).
   */
  void bucket(CudaBucket b) throws StatusException {
    requireHeader("a CUDA bucket");
    checkNotAborted();
    if (relayed) {
      throw invalid("CUDA buckets carry source weights; a relayed (already quantized) part sends"
          + " its bytes in chunks");
    }
    if (b.getIndex() != buckets) {
      throw invalid("CUDA bucket " + Integer.toUnsignedString(b.getIndex()) + " arrived where"
          + " bucket " + buckets + " was due (number them 0, 1, 2... in sending order)");
    }
    if (b.getIpcHandle().size() != CudaIpcReader.HANDLE_BYTES) {
      throw invalid("CUDA bucket " + b.getIndex() + ": ipc_handle has " + b.getIpcHandle().size()
          + " bytes; a cudaIpcMemHandle_t has " + CudaIpcReader.HANDLE_BYTES);
    }
    if (b.getTensorsCount() == 0) {
      throw invalid("CUDA bucket " + b.getIndex() + " holds no tensors");
    }
    long length = b.getByteLength();
    List<CudaIpcReader.BucketTensor> refs = new ArrayList<>();
    ByteRanges used = new ByteRanges();
    for (CudaTensor c : b.getTensorsList()) {
      if (tensors.containsKey(c.getName())) {
        throw invalid("tensor " + c.getName() + " is sent twice in " + describe());
      }
      Incoming t = declare(c.getName(), c.getDtype(), c.getShapeList(), false);
      long offset = c.getOffset();
      long end = offset + t.spec.byteLength();
      if (offset < 0 || end > length || end < offset) {
        throw invalid("tensor " + c.getName() + ": [" + offset + ", " + end + ") lies outside"
            + " CUDA bucket " + b.getIndex() + " of " + length + " bytes");
      }
      if (!used.add(offset, t.spec.byteLength())) {
        throw invalid("tensor " + c.getName() + " overlaps another tensor of CUDA bucket "
            + b.getIndex());
      }
      t.received = t.spec.byteLength();
      t.done = true;
      refs.add(new CudaIpcReader.BucketTensor(t.plan, offset));
    }
    // A malformed bucket is refused as such above; a well-formed one may still not be readable.
    CudaIpcReader reader = CudaIpcReader.of(quantizer);
    if (reader == null) {
      throw Status.FAILED_PRECONDITION.withDescription("this sidecar quantizes on "
          + quantizer.device() + " and cannot read GPU memory by CUDA IPC handle; send the"
          + " weights as bytes (weightsync_client.push, or TensorChunk data)").asException();
    }
    if (!sameGpu(b.getGpuUuid(), reader.gpuUuid())) {
      throw Status.FAILED_PRECONDITION.withDescription("CUDA bucket " + b.getIndex() + " is on "
          + printable(b.getGpuUuid()) + " but this sidecar runs on " + reader.gpuUuid()
          + "; send the weights as bytes, or to a sidecar on that GPU").asException();
    }
    buckets++;
    long start = System.nanoTime();
    try {
      if (ipc == null) {
        reserve("the headers of " + (BUCKET_SHARD_FILES - 1) + " more staged shards",
            (BUCKET_SHARD_FILES - 1) * ShardSet.FILE_OVERHEAD);
        ipc = reader.openSession();
        shard.spread(BUCKET_SHARD_FILES);
      }
      QuantError e = ipc.quantizeBucket(b.getIpcHandle().toByteArray(), b.getHandleOffset(),
          length, refs, shard);
      bucketError = bucketError.plus(e);
    } catch (IllegalArgumentException e) { // a NaN, a refused handle, a bucket out of range
      throw invalid("CUDA bucket " + b.getIndex() + ": " + e.getMessage());
    } catch (IOException | RuntimeException e) {
      throw Status.INTERNAL.withDescription("CUDA bucket " + b.getIndex() + ": reading it on the"
          + " GPU failed: " + e.getMessage()).withCause(e).asException();
    }
    quantizeSeconds += (System.nanoTime() - start) / 1e9;
    metrics.bytesReceived(refs.stream().mapToLong(r -> r.plan().input().byteLength()).sum());
  }

  /** Whether two CUDA device UUIDs name the same GPU ("GPU-" prefix and case aside). */
  static boolean sameGpu(String a, String b) {
    return strip(a).equalsIgnoreCase(strip(b));
  }

  private static String strip(String uuid) {
    String u = uuid.trim();
    return u.regionMatches(true, 0, "GPU-", 0, 4) ? u.substring(4) : u;
  }

  private void complete(Incoming t) throws StatusException {
    t.done = true;
    openRanges -= t.ranges.intervals();
    t.ranges.clear();
    open--;
    if (t.direct) {
      if (t.scanWhenComplete) {
        scanStaged(t);
      }
      return;
    }
    if (RowBand.rowMultiple(t.plan) != 0) {
      startBands(t);
      if (t.rowsStarted < t.spec.rows()) {
        startRows(t, t.spec.rows() - t.rowsStarted);
      }
      try {
        RowBand.finish(t.plan, shard);
      } catch (IOException e) {
        throw quantizingFailed(e);
      }
      return;
    }
    submit(() -> quantizing.submit(t.plan,
        FileRegionSource.of(spool, t.spoolStart, t.spec.byteLength(), t.spec.name()), shard));
  }

  private static StatusException quantizingFailed(Exception e) {
    return Status.INTERNAL.withDescription("quantizing failed: " + e.getMessage()).withCause(e)
        .asException();
  }

  /** Validates the commit and closes the part's files; returns what the part contributes. */
  PartResult commit(Commit c) throws StatusException {
    requireHeader("the commit");
    checkNotAborted();
    if (tensors.isEmpty()) {
      throw invalid("the commit of " + describe() + " comes with no tensors: an empty part would"
          + " hand the engine nothing to load");
    }
    for (Incoming t : tensors.values()) {
      if (!t.done) {
        throw invalid("tensor " + t.spec.name() + " is incomplete at commit: "
            + t.received + " of " + t.spec.byteLength() + " bytes arrived, first gap at byte "
            + t.ranges.prefix());
      }
    }
    if (c.getTensorCount() != tensors.size()) {
      throw invalid("commit counts " + c.getTensorCount() + " tensors but " + tensors.size()
          + " arrived");
    }
    if (c.getTotalBytes() != bytesIn) {
      throw invalid("commit counts " + c.getTotalBytes() + " bytes but " + bytesIn + " arrived");
    }
    QuantError error;
    long start = System.nanoTime();
    try {
      error = quantizing.finish().plus(bucketError);
    } catch (NonFiniteWeightException e) {
      throw invalid(e.getMessage());
    } catch (IOException | RuntimeException e) {
      throw quantizingFailed(e);
    }
    quantizeSeconds += (System.nanoTime() - start) / 1e9;
    closeIpc();
    List<ShardSpool> shards;
    try {
      shards = shard.finish();
      spool.close();
      Files.deleteIfExists(spoolPath);
    } catch (IOException e) {
      throw Status.INTERNAL.withDescription("cannot finish the staged shard: " + e.getMessage())
          .asException();
    }
    room.close(); // every byte is on disk now, and the spool is gone
    return new PartResult(part.index(), shards, List.copyOf(plans), bytesIn, shard.dataLength(),
        error, quantizeSeconds, relayed, relayedConfig);
  }

  private void closeIpc() {
    if (ipc != null) {
      ipc.close();
      ipc = null;
    }
  }

  double secondsSinceStart() {
    return (System.nanoTime() - startNanos) / 1e9;
  }

  VersionCoordinator.Part part() {
    return part;
  }

  /** Drops everything this part wrote and frees its slot for a retry. */
  void discard() {
    quantizing.abandon();
    closeIpc();
    if (room != null) {
      room.close();
    }
    try {
      if (spool != null) {
        spool.close();
        Files.deleteIfExists(spoolPath);
      }
      if (shard != null) {
        shard.delete();
      }
    } catch (IOException e) {
      // the version's folder is deleted as a whole if the version aborts
    }
    if (part != null) {
      part.fail(claimed, reservedBytes);
    }
  }

  /**
   * Caller-supplied text made safe for a status message and one log line: control characters
   * escaped, and clipped just beyond the longest legal value (a tensor name's 1024 characters),
   * so a legal name is shown whole and a hostile megabyte never is.
   */
  static String printable(String text) {
    StringBuilder b = new StringBuilder();
    for (int i = 0; i < text.length(); ) {
      if (b.length() > MAX_NAME_LENGTH) {
        return b + "...";
      }
      int c = text.codePointAt(i);
      i += Character.charCount(c);
      if (c < 0x20 || c == 0x7F) {
        b.append(String.format("\\x%02x", c));
      } else {
        b.appendCodePoint(c);
      }
    }
    return b.toString();
  }

  private void checkTensorSize(TensorSpec spec) throws StatusException {
    if (spec.byteLength() > limits.maxTensorBytes()) {
      throw exhausted("tensor " + spec.name() + " has " + spec.byteLength() + " bytes, over the "
          + limits.maxTensorBytes() + "-byte limit (max-tensor-bytes)");
    }
  }

  /**
   * Reserves, across all streams, the staging space a tensor will take before any of its bytes
   * is written: its outputs, and its bytes in the spool when it is quantized from there. A full
   * disk thus refuses the tensor cleanly instead of failing half-way through a file.
   */
  private void reserveRoom(TensorSpec spec, TensorPlan plan, boolean viaSpool)
      throws StatusException {
    long bytes = viaSpool ? spec.byteLength() : 0;
    for (TensorSpec out : plan.outputs()) {
      bytes += out.byteLength();
    }
    reserve("tensor " + spec.name(), bytes);
  }

  private void reserve(String what, long bytes) throws StatusException {
    try {
      room.take(what, bytes);
    } catch (StagingSpace.NoRoom e) {
      throw exhausted(e.getMessage());
    } catch (IOException e) {
      throw Status.INTERNAL.withDescription("cannot read the staging filesystem's free space: "
          + e.getMessage()).asException();
    }
  }

  private static StatusException exhausted(String message) {
    return Status.RESOURCE_EXHAUSTED.withDescription(message).asException();
  }

  private static ObjectNode parseRelayedConfig(String json) throws StatusException {
    if (json.isEmpty()) {
      return null; // an unquantized (bf16) relay
    }
    try {
      JsonNode n = JSON.readTree(json);
      if (n instanceof ObjectNode o) {
        return o;
      }
    } catch (IOException e) {
      // reported below
    }
    throw invalid("quantization_config_json of a relayed part must be a JSON object");
  }

  private void requireHeader(String what) throws StatusException {
    if (part == null) {
      throw invalid(what + " arrived before the header");
    }
  }

  private void checkNotAborted() throws StatusException {
    Status s = part.abortedWith();
    if (s != null) {
      throw s.asException();
    }
  }

  private static StatusException invalid(String message) {
    return Status.INVALID_ARGUMENT.withDescription(message).asException();
  }
}
