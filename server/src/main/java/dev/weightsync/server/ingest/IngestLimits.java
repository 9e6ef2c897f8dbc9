package dev.weightsync.server.ingest;

/**
 * What one sidecar accepts, each refused with RESOURCE_EXHAUSTED naming the limit (the size of a
 * chunk, names and part counts are fixed limits of {@link PartReceiver}; staging space is
 * accounted by {@link dev.weightsync.server.stage.StagingSpace}).
 *
 * @param maxOpenTensors incomplete tensors at once per stream
 * @param maxTensorBytes bytes of one tensor
 * @param maxVersionBytes bytes of all tensors of a version, all parts together
 * @param maxTensors tensors in a version, all parts together
 * @param maxStreams UpdateWeights streams open at once
 * @param maxStreamsPerCaller of those, open at once from one caller
 */
public record IngestLimits(int maxOpenTensors, long maxTensorBytes, long maxVersionBytes,
    int maxTensors, int maxStreams, int maxStreamsPerCaller) {}
