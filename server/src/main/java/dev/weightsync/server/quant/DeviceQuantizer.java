package dev.weightsync.server.quant;

import dev.weightsync.core.quant.Quantizer;

/** A quantizer on one GPU that also reads trainers' CUDA IPC buckets there. */
public interface DeviceQuantizer extends Quantizer, CudaIpcReader {}
