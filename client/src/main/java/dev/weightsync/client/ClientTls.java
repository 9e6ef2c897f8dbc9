package dev.weightsync.client;

import io.grpc.ChannelCredentials;
import io.grpc.TlsChannelCredentials;
import java.io.IOException;
import java.nio.file.Path;

/**
 * How a client reaches a sidecar over TLS: {@code ca} to trust (null: the system's trust store),
 * and a client certificate and key (PEM, PKCS#8) for a sidecar that requires mutual TLS.
 */
public record ClientTls(Path ca, Path cert, Path key) {

  public ClientTls {
    if ((cert == null) != (key == null)) {
      throw new IllegalArgumentException("a client certificate needs its key and the other way"
          + " round (--tls-cert with --tls-key)");
    }
  }

  /** None when no TLS option is set: the channel is plaintext. */
  public static ClientTls of(Path ca, Path cert, Path key) {
    return ca == null && cert == null && key == null ? null : new ClientTls(ca, cert, key);
  }

  /** The gRPC channel credentials these files make. */
  public ChannelCredentials credentials() throws IOException {
    TlsChannelCredentials.Builder b = TlsChannelCredentials.newBuilder();
    if (ca != null) {
      b.trustManager(ca.toFile());
    }
    if (cert != null) {
      b.keyManager(cert.toFile(), key.toFile());
    }
    return b.build();
  }
}
