package dev.weightsync.server.engine;

import java.nio.file.Path;

/**
 * A staged folder to hand to an engine: a whole version ({@code partCount} 1), or on a
 * trainer-side sidecar one part of a version that several senders make up together.
 */
public record Delivery(Path folder, String version, int partIndex, int partCount) {}
