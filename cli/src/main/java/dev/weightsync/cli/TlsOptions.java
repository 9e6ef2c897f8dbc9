package dev.weightsync.cli;

import dev.weightsync.client.ClientTls;
import java.nio.file.Path;
import picocli.CommandLine.Option;

/** The client side of TLS, shared by push, status and health. */
final class TlsOptions {

  @Option(names = "--tls-ca", paramLabel = "PEM", description = "Connect over TLS, trusting this CA (without it, TLS options trust the system's CAs).")
  Path ca;

  @Option(names = "--tls-cert", paramLabel = "PEM", description = "Client certificate, for a sidecar that requires mutual TLS (with --tls-key).")
  Path cert;

  @Option(names = "--tls-key", paramLabel = "PEM", description = "The client certificate's private key (PKCS#8).")
  Path key;

  @Option(names = "--tls", description = "Connect over TLS trusting the system's CAs (implied by the other --tls-* options).")
  boolean tls;

  /** Null for plaintext. */
  ClientTls toClientTls() {
    ClientTls t = ClientTls.of(ca, cert, key);
    return t == null && tls ? new ClientTls(null, null, null) : t;
  }
}
