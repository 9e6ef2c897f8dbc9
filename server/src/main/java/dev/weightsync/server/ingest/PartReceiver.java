package dev.weightsync.server.ingest;

import static dev.weightsync.server.ingest.Refusals.checkName;
import static dev.weightsync.server.ingest.Refusals.dtype;
import static dev.weightsync.server.ingest.Refusals.exhausted;
import static dev.weightsync.server.ingest.Refusals.invalid;
import static dev.weightsync.server.ingest.Refusals.printable;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.weightsync.client.WireLimits;
import dev.weightsync.core.quant.AlreadyQuantized;
import dev.weightsync.core.quant.Format;
import dev.weightsync.core.quant.NonFiniteScan;
import dev.weightsync.core.quant.NonFiniteWeightException;
import dev.weightsync.core.quant.QuantError;
import dev.weightsync.core.quant.QuantQueue;
import dev.weightsync.core.quant.Quantizer;
import dev.weightsync.core.quant.RowBand;
import dev.weightsync.core.quant.TensorPlan;
import dev.weightsync.core.quant.TensorSelector;
import dev.weightsync.core.tensor.DType;
import dev.weightsync.core.tensor.TensorSpec;
import dev.weightsync.proto.v1.Commit;
import dev.weightsync.proto.v1.CudaBucket;
import dev.weightsync.proto.v1.Header;
import dev.weightsync.proto.v1.TensorChunk;
import dev.weightsync.server.config.Role;
import dev.weightsync.server.metrics.SyncMetrics;
import dev.weightsync.server.pipeline.PartResult;
import dev.weightsync.server.pipeline.VersionCoordinator;
import dev.weightsync.server.stage.ShardSet;
import dev.weightsync.server.stage.ShardSpool;
import dev.weightsync.server.stage.StagingSpace;
import io.grpc.Status;
import io.grpc.StatusException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Receives one part of one version from one stream: validates every message, assembles tensors in
 * a spool file beside the staged shard (so neither heap nor direct memory grows with the model),
 * quantizes each band of rows as soon as its bytes are there (the first 128-row block of an FP8
 * tensor need not wait for the rest of it), and writes the result straight into the part's shard.
 *
 * <p>Not thread-safe: the service calls it from one sequential executor per stream.
 *
 * <p>Why this file is long: it is one state machine, a part's tensors from the header to the
 * commit, and its steps share that state. What stands apart has moved out: {@link PartHeader},
 * {@link Refusals}, {@link TensorSpool}, {@link BucketIntake}, {@link ByteRanges}.
 */
final class PartReceiver {

  /** Bytes read back at a time to scan a direct tensor whose chunks were cut inside elements. */
  static final int SCAN_WINDOW = 4 << 20;
  /**
   * Disjoint received ranges a stream may hold across its incomplete tensors (about 100 bytes of
   * heap each): chunks sent in order are one range per tensor, so only a caller scattering chunks
   * on purpose comes near it, and its heap stays bounded.
   */
  static final int MAX_OPEN_RANGES = 16384;
  /** Bands (or whole tensors) being quantized while the next bytes arrive. */
  static final int QUANTIZE_IN_FLIGHT = 4;
  /**
   * Input bytes in a band of rows handed to the quantizer before the tensor is complete: large
   * enough that a GPU call is mostly transfer and kernel, small enough to start early.
   */
  static final long BAND_BYTES = 16 << 20;

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
  private TensorSpool spool;
  private final StagingSpace space;
  /** This part's share of the staging ledger, from the header to commit or discard. */
  private StagingSpace.Reservation room;
  private ShardSet shard;
  private int open;
  /** Ranges held by this stream's incomplete tensors, bounded by MAX_OPEN_RANGES. */
  private int openRanges;
  private long bytesIn;
  /** Bytes counted towards the version's size by this part (given back if the part fails). */
  private long reservedBytes;
  private final Role role;
  private boolean relayed;
  private ObjectNode relayedConfig;
  /** Tensors being quantized while the next ones arrive (a GPU overlaps them). */
  private final QuantQueue quantizing;
  /** What the header declared its chunks' checksum to be. */
  private ChunkChecksum checksum = ChunkChecksum.CRC32C;
  private final Quantizer quantizer;
  /** The part's CUDA buckets, once one arrives. */
  private BucketIntake buckets;
  private double quantizeSeconds;

  /**
   * @param role this sidecar's role: an engine-side sidecar ({@code engine}) also takes parts
   *     relayed already quantized
   */
  PartReceiver(VersionCoordinator coordinator, Quantizer quantizer, TensorSelector selector,
      IngestLimits limits, StagingSpace space, SyncMetrics metrics, Role role) {
    this.space = space;
    this.role = role;
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
      return "version " + part.version() + " part " + part.index()
          + (part.subCount() == 1 ? "" : " sub-part " + part.sub() + " of " + part.subCount());
    }
    return refusedHeader != null ? refusedHeader + " (header refused)" : "(no header yet)";
  }

  void header(Header h, dev.weightsync.proto.v1.Format serverFormat) throws StatusException {
    refusedHeader = "version '" + printable(h.getWeightVersion()) + "' part "
        + Integer.toUnsignedString(h.getPartIndex());
    if (part != null) {
      throw invalid("a second header arrived on the stream of " + describe());
    }
    PartHeader header = PartHeader.validate(h, serverFormat, role);
    checksum = header.checksum();
    relayed = header.relayed();
    relayedConfig = header.relayedConfig();
    int count = header.count();
    part = coordinator.open(header.version(), header.index(), count, header.sub(),
        header.subCount());
    try {
      String base = String.format("model-%05d-of-%05d", part.index() + 1, count)
          + (header.subCount() == 1 ? "" : String.format(".%03d", header.sub() + 1));
      spool = new TensorSpool(part.directory().resolve("." + base + ".incoming"));
      shard = part.shardSet(base);
      ShardSet staged = shard;
      TensorSpool spooled = spool;
      room = space.open(() -> spooled.written() + staged.onDisk());
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
    if (length > WireLimits.MAX_CHUNK_BYTES) {
      throw invalid("tensor " + t.spec.name() + ": chunk of " + length + " bytes exceeds the "
          + WireLimits.MAX_CHUNK_BYTES + "-byte limit");
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
        spool.write(t.spoolStart + offset, pieces, length);
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
        spool.source(t.spoolStart + first * rowBytes, rows * rowBytes, t.spec.name()), shard));
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
    Incoming t = new Incoming(spec, plan, direct,
        spooled && !direct ? spool.allocate(spec.byteLength()) : 0);
    if (spooled) {
      open++;
    }
    tensors.put(name, t);
    bytesIn += spec.byteLength();
    if (spooled && spec.byteLength() == 0) {
      complete(t);
    }
    return t;
  }

  /**
   * A CUDA IPC bucket: its tensors are quantized straight from the trainer's GPU memory before
   * this returns (the trainer may then reuse the memory).
   */
  void bucket(CudaBucket b) throws StatusException {
    requireHeader("a CUDA bucket");
    checkNotAborted();
    if (relayed) {
      throw invalid("CUDA buckets carry source weights; a relayed (already quantized) part sends"
          + " its bytes in chunks");
    }
    if (buckets == null) {
      buckets = new BucketIntake(quantizer, shard, this::reserve);
    }
    long bytes = buckets.take(b, c -> {
      if (tensors.containsKey(c.getName())) {
        throw invalid("tensor " + c.getName() + " is sent twice in " + describe());
      }
      Incoming t = declare(c.getName(), c.getDtype(), c.getShapeList(), false);
      t.received = t.spec.byteLength();
      t.done = true;
      return t.plan;
    });
    metrics.bytesReceived(bytes);
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
        spool.source(t.spoolStart, t.spec.byteLength(), t.spec.name()), shard));
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
      error = quantizing.finish();
      if (buckets != null) {
        error = error.plus(buckets.error());
        quantizeSeconds += buckets.seconds();
      }
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
    } catch (IOException e) {
      throw Status.INTERNAL.withDescription("cannot finish the staged shard: " + e.getMessage())
          .asException();
    }
    room.close(); // every byte is on disk now, and the spool is gone
    return new PartResult(part.index(), shards, List.copyOf(plans), bytesIn, shard.dataLength(),
        error, quantizeSeconds, relayed, relayedConfig);
  }

  private void closeIpc() {
    if (buckets != null) {
      buckets.close();
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

}
