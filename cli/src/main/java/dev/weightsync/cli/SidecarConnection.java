package dev.weightsync.cli;

import dev.weightsync.client.WeightSyncClient;
import java.io.IOException;
import java.nio.file.Path;
import java.util.logging.Level;
import java.util.logging.Logger;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** How push and status reach a sidecar: its address, the token to send, TLS. */
final class SidecarConnection {

  /**
   * gRPC logs a failed name lookup or connection as a warning with a stack trace; the command says
   * it in one line instead (CallErrors). Held here so the logger and its level are not collected.
   */
  private static final Logger GRPC_LOG = Logger.getLogger("io.grpc");

  static {
    if (System.getenv("WEIGHTSYNC_DEBUG") == null) {
      GRPC_LOG.setLevel(Level.SEVERE);
    }
  }

  @Option(names = "--target", required = true, description = "The sidecar: HOST:PORT, or unix:///PATH for its Unix socket on this node.")
  String target;

  @Option(names = "--auth-token-file", description = "A file whose first line is the bearer token to send.")
  Path authTokenFile;

  @Mixin TlsOptions tls = new TlsOptions();

  WeightSyncClient connect() throws IOException {
    return connect(WeightSyncClient.DEFAULT_CHUNK_BYTES);
  }

  /** A client that cuts tensors into chunks of {@code chunkBytes}. */
  WeightSyncClient connect(int chunkBytes) throws IOException {
    return WeightSyncClient.connect(target, Tokens.read(authTokenFile), 3, tls.toClientTls(),
        chunkBytes);
  }
}
