package dev.weightsync.cli;

import dev.weightsync.client.WeightSyncClient;
import java.io.IOException;
import java.nio.file.Path;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** How push and status reach a sidecar: its address, the token to send, TLS. */
final class SidecarConnection {

  @Option(names = "--target", required = true, description = "The sidecar, HOST:PORT.")
  String target;

  @Option(names = "--auth-token-file", description = "A file whose first line is the bearer token to send.")
  Path authTokenFile;

  @Mixin TlsOptions tls = new TlsOptions();

  WeightSyncClient connect() throws IOException {
    return WeightSyncClient.connect(target, Tokens.read(authTokenFile), 3, tls.toClientTls());
  }
}
