package dev.weightsync.server.pipeline;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.weightsync.core.quant.QuantError;
import dev.weightsync.core.quant.TensorPlan;
import dev.weightsync.server.stage.ShardSpool;
import java.util.List;

/**
 * What one committed part contributes to its version: its finished shard files, its plans. A
 * {@code relayed} part arrived already
 * quantized, with its {@code quantization_config} ({@code relayedConfig}, null for none).
 */
public record PartResult(int partIndex, List<ShardSpool> shards, List<TensorPlan> plans,
    long bytesIn, long bytesOut, QuantError error, double quantizeSeconds, boolean relayed,
    ObjectNode relayedConfig) {}
