package dev.weightsync.server.pipeline;

import dev.weightsync.core.quant.QuantError;
import dev.weightsync.server.engine.EngineResult;
import java.nio.file.Path;
import java.util.List;

/** A version that reached the engines: what every part's caller is told. */
public record VersionOutcome(String version, Path staged, long bytesIn, long bytesOut,
    int tensorsIn, int tensorsOut, QuantError error, double receiveSeconds, double quantizeSeconds,
    double stageSeconds, double engineSeconds, double totalSeconds, List<EngineResult> engines) {}
