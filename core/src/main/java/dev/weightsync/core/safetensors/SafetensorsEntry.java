package dev.weightsync.core.safetensors;

import dev.weightsync.core.tensor.TensorSpec;

/** One tensor of a safetensors file: its spec and where its bytes lie in the data section. */
public record SafetensorsEntry(TensorSpec spec, long begin, long end) {}
