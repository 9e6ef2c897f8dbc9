package dev.weightsync.server.pipeline;

import dev.weightsync.core.quant.QuantError;
import dev.weightsync.core.quant.TensorPlan;
import dev.weightsync.server.stage.ShardSpool;
import java.util.List;

/** What one committed part contributes to its version. */
public record PartResult(int partIndex, ShardSpool shard, List<TensorPlan> plans, long bytesIn,
    long bytesOut, QuantError error, double quantizeSeconds) {}
