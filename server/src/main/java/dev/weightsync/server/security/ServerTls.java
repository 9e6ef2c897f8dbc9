package dev.weightsync.server.security;

import io.grpc.ServerCredentials;
import io.grpc.TlsServerCredentials;
import io.grpc.util.AdvancedTlsX509KeyManager;
import io.grpc.util.AdvancedTlsX509TrustManager;
import io.grpc.util.CertificateUtils;
import io.netty.handler.ssl.OpenSsl;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.util.Arrays;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.logging.Logger;

/**
 * TLS (and mutual TLS) for the gRPC port from PEM files, through grpc-java's key and trust
 * managers, whose credentials can be swapped while the server runs. Every {@code reload} the
 * files are read and, when their contents changed (a rotated Kubernetes Secret: the kubelet swaps
 * a symlink, so contents, not times, are compared), loaded for new connections; files that do not
 * parse (caught mid-rotation) leave the previous credentials in place until the next check.
 * BoringSSL (netty-tcnative) does the handshakes where it loads, the JDK's TLS otherwise.
 */
public final class ServerTls implements AutoCloseable {

  private static final Logger LOG = Logger.getLogger(ServerTls.class.getName());

  private final ScheduledExecutorService reloader = Executors.newSingleThreadScheduledExecutor(r -> {
    Thread t = new Thread(r, "weightsync-tls-reload");
    t.setDaemon(true);
    return t;
  });
  private final Path cert;
  private final Path key;
  private final Path clientCa;
  private final AdvancedTlsX509KeyManager keys = new AdvancedTlsX509KeyManager();
  private final AdvancedTlsX509TrustManager trust;
  private final ServerCredentials credentials;
  private byte[] loaded;

  /**
   * @param clientCa null for server-only TLS; else client certificates are required and must
   *     chain to it
   * @throws IOException naming the files that cannot be read or parsed
   */
  public ServerTls(Path cert, Path key, Path clientCa, Duration reload) throws IOException {
    this.cert = cert;
    this.key = key;
    this.clientCa = clientCa;
    TlsServerCredentials.Builder b = TlsServerCredentials.newBuilder().keyManager(keys);
    try {
      if (clientCa != null) {
        trust = AdvancedTlsX509TrustManager.newBuilder()
            .setVerification(AdvancedTlsX509TrustManager.Verification.CERTIFICATE_ONLY_VERIFICATION)
            .build();
        b.trustManager(trust).clientAuth(TlsServerCredentials.ClientAuth.REQUIRE);
      } else {
        trust = null;
      }
      load(digest());
    } catch (GeneralSecurityException | IOException | RuntimeException e) {
      reloader.shutdownNow();
      throw new IOException("TLS: cannot load " + describe() + ": " + e.getMessage(), e);
    }
    credentials = b.build();
    long period = Math.max(100, reload.toMillis());
    reloader.scheduleWithFixedDelay(this::reloadIfChanged, period, period, TimeUnit.MILLISECONDS);
  }

  private String describe() {
    return cert + " / " + key + (clientCa == null ? "" : " / " + clientCa);
  }

  private byte[] digest() throws IOException {
    try {
      MessageDigest d = MessageDigest.getInstance("SHA-256");
      for (Path p : clientCa == null ? new Path[] {cert, key} : new Path[] {cert, key, clientCa}) {
        d.update(Files.readAllBytes(p));
      }
      return d.digest();
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }

  private void load(byte[] digest) throws IOException, GeneralSecurityException {
    try (InputStream c = Files.newInputStream(cert); InputStream k = Files.newInputStream(key)) {
      keys.updateIdentityCredentials(CertificateUtils.getX509Certificates(c),
          CertificateUtils.getPrivateKey(k));
    }
    if (trust != null) {
      try (InputStream ca = Files.newInputStream(clientCa)) {
        trust.updateTrustCredentials(CertificateUtils.getX509Certificates(ca));
      }
    }
    loaded = digest;
  }

  private void reloadIfChanged() {
    try {
      byte[] now = digest();
      if (!Arrays.equals(now, loaded)) {
        load(now);
        LOG.info("TLS: reloaded " + describe() + " for new connections");
      }
    } catch (GeneralSecurityException | IOException | RuntimeException e) {
      LOG.warning("TLS: cannot reload " + describe() + " (" + e.getMessage()
          + "); new connections keep the previous certificate");
    }
  }

  public ServerCredentials credentials() {
    return credentials;
  }

  /** Which TLS implementation handshakes, for the start-up log line. */
  public static String provider() {
    return OpenSsl.isAvailable() ? "BoringSSL (netty-tcnative)" : "JDK";
  }

  @Override
  public void close() {
    reloader.shutdownNow();
  }
}
