package dev.weightsync.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.weightsync.cli.engine.StandInEngine;
import dev.weightsync.client.ClientTls;
import dev.weightsync.client.WeightSyncClient;
import dev.weightsync.proto.v1.EngineOutcome;
import dev.weightsync.server.Sidecar;
import dev.weightsync.server.config.ConfigLoader;
import io.grpc.StatusRuntimeException;
import java.io.FileInputStream;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.security.KeyStore;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.TrustManagerFactory;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * TLS and mutual TLS on the gRPC port with certificates made by openssl: who gets in, who does
 * not, certificate rotation without a restart, the CLI's TLS flags, and the relay over mTLS.
 */
class TlsIT {

  @TempDir Path tmp;

  private void openssl(String... args) throws Exception {
    List<String> cmd = new java.util.ArrayList<>(List.of("openssl"));
    cmd.addAll(List.of(args));
    Launcher.Result r = Launcher.run(cmd, 60);
    assertThat(r.exitCode()).as(String.join(" ", cmd) + ": " + r.stderr()).isZero();
  }

  private Path p(String name) {
    return tmp.resolve(name);
  }

  /** A CA {@code name}.pem/.key. */
  private void ca(String name) throws Exception {
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", p(name + ".key").toString(),
        "-out", p(name + ".pem").toString(), "-days", "2", "-subj", "/CN=" + name);
  }

  /** A certificate {@code name}.pem/.key with common name {@code cn}, signed by {@code ca}. */
  private void cert(String name, String cn, String ca) throws Exception {
    Files.writeString(p("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", p(name + ".key").toString(),
        "-out", p(name + ".csr").toString(), "-subj", "/CN=" + cn);
    openssl("x509", "-req", "-in", p(name + ".csr").toString(), "-CA", p(ca + ".pem").toString(),
        "-CAkey", p(ca + ".key").toString(), "-CAcreateserial", "-out", p(name + ".pem").toString(),
        "-days", "2", "-extfile", p("ext.cnf").toString());
  }

  @BeforeEach
  void certificates() throws Exception {
    ca("ca");
    ca("other-ca");
    cert("server", "sidecar-1", "ca");
    cert("client", "trainer", "ca");
    cert("intruder", "intruder", "other-ca");
  }

  private SidecarHarness harness(boolean mutual, Map<String, Object> extra) throws IOException {
    Map<String, Object> flags = new HashMap<>(Map.of("tls-cert", p("server.pem").toString(),
        "tls-key", p("server.key").toString(), "tls-reload", "500ms"));
    if (mutual) {
      flags.put("tls-client-ca", p("ca.pem").toString());
    }
    flags.putAll(extra);
    return new SidecarHarness(tmp, flags);
  }

  private WeightSyncClient client(SidecarHarness h, ClientTls tls) throws IOException {
    return WeightSyncClient.connect("127.0.0.1:" + h.sidecar.port(), null, 1, tls);
  }

  @Test
  void tlsAdmitsClientsThatTrustTheServerAndRotatesItsCertificateWithoutARestart()
      throws Exception {
    try (SidecarHarness h = harness(false, Map.of())) {
      try (WeightSyncClient c = client(h, new ClientTls(p("ca.pem"), null, null))) {
        assertThat(c.pushFolder(Launcher.golden("bf16"), "1", 0, 1).getEngines(0).getOutcome())
            .isEqualTo(EngineOutcome.LOADED);
      }
      try (WeightSyncClient plain = client(h, null)) {
        assertThatThrownBy(plain::status).isInstanceOf(StatusRuntimeException.class);
      }
      try (WeightSyncClient wrongCa = client(h, new ClientTls(p("other-ca.pem"), null, null))) {
        assertThatThrownBy(wrongCa::status).isInstanceOf(StatusRuntimeException.class)
            .hasMessageContaining("UNAVAILABLE");
      }
      // The CLI's flags.
      Launcher.Result status = Launcher.weightsync("status", "--target",
          "127.0.0.1:" + h.sidecar.port(), "--tls-ca", p("ca.pem").toString());
      assertThat(status.exitCode()).as(status.stderr()).isZero();
      assertThat(status.stdout()).contains("last loaded version '1'");

      assertThat(servedCommonName(h.sidecar.port())).isEqualTo("sidecar-1");
      cert("rotated", "sidecar-2", "ca"); // a Secret rotation: new files replace the old
      Files.move(p("rotated.key"), p("server.key"), StandardCopyOption.REPLACE_EXISTING);
      Files.move(p("rotated.pem"), p("server.pem"), StandardCopyOption.REPLACE_EXISTING);
      String cn = "";
      for (int i = 0; i < 100 && !cn.equals("sidecar-2"); i++) {
        Thread.sleep(100);
        cn = servedCommonName(h.sidecar.port());
      }
      assertThat(cn).as("the rotated certificate is served to new connections").isEqualTo("sidecar-2");
      try (WeightSyncClient c = client(h, new ClientTls(p("ca.pem"), null, null))) {
        assertThat(c.pushFolder(Launcher.golden("bf16"), "2", 0, 1).getEngines(0).getOutcome())
            .isEqualTo(EngineOutcome.LOADED);
      }
    }
  }

  @Test
  void mutualTlsAdmitsOnlyClientCertificatesOfItsCa() throws Exception {
    try (SidecarHarness h = harness(true, Map.of())) {
      try (WeightSyncClient noCert = client(h, new ClientTls(p("ca.pem"), null, null))) {
        assertThatThrownBy(noCert::status).isInstanceOf(StatusRuntimeException.class);
      }
      try (WeightSyncClient intruder = client(h,
          new ClientTls(p("ca.pem"), p("intruder.pem"), p("intruder.key")))) {
        assertThatThrownBy(intruder::status).isInstanceOf(StatusRuntimeException.class);
      }
      assertThat(h.engine.routes()).isEmpty();
      try (WeightSyncClient c = client(h, new ClientTls(p("ca.pem"), p("client.pem"), p("client.key")))) {
        assertThat(c.pushFolder(Launcher.golden("bf16"), "1", 0, 1).getEngines(0).getOutcome())
            .isEqualTo(EngineOutcome.LOADED);
      }
      Launcher.Result health = Launcher.weightsync("health", "--target",
          "127.0.0.1:" + h.sidecar.port(), "--tls-ca", p("ca.pem").toString(), "--tls-cert",
          p("client.pem").toString(), "--tls-key", p("client.key").toString());
      assertThat(health.exitCode()).as(health.stdout() + health.stderr()).isZero();
    }
  }

  @Test
  void thePythonClientSpeaksMutualTls() throws Exception {
    PythonClientIT.stubs();
    try (SidecarHarness h = harness(true, Map.of())) {
      Launcher.Result r = Launcher.run(List.of(PythonClientIT.PY,
          Launcher.root().resolve("client/python/e2e/push_tls.py").toString(),
          "127.0.0.1:" + h.sidecar.port(), p("ca.pem").toString(), p("client.pem").toString(),
          p("client.key").toString()), 120);
      assertThat(r.exitCode()).as(r.stdout() + r.stderr()).isZero();
      assertThat(r.stdout()).contains("tls push ok");
    }
  }

  @Test
  void theRelayPresentsItsClientCertificateToAnEngineSideSidecarThatRequiresOne() throws Exception {
    try (StandInEngine engine = new StandInEngine(0, null).start()) {
      Sidecar engineSide = new Sidecar(ConfigLoader.load(null, Map.of(), Map.of("role", "engine",
          "port", 0, "metrics-port", -1, "staging-dir", p("engine").toString(),
          "sglang-url", List.of(engine.url()), "tls-cert", p("server.pem").toString(),
          "tls-key", p("server.key").toString(), "tls-client-ca", p("ca.pem").toString()))).start();
      Sidecar trainerSide = new Sidecar(ConfigLoader.load(null, Map.of(), Map.of("role", "trainer",
          "port", 0, "metrics-port", -1, "staging-dir", p("trainer").toString(),
          "relay-to", List.of("127.0.0.1:" + engineSide.port()),
          "relay-tls-ca", p("ca.pem").toString(), "relay-tls-cert", p("client.pem").toString(),
          "relay-tls-key", p("client.key").toString()))).start();
      try (WeightSyncClient c = WeightSyncClient.connect("127.0.0.1:" + trainerSide.port())) {
        assertThat(c.pushFolder(Launcher.golden("bf16"), "5", 0, 1).getEngines(0).getOutcome())
            .isEqualTo(EngineOutcome.LOADED);
        assertThat(engine.weightVersion()).isEqualTo("5");
      } finally {
        trainerSide.close();
        engineSide.close();
      }
    }
  }

  /** The common name of the certificate the server presents to a new connection. */
  private String servedCommonName(int port) throws Exception {
    KeyStore trust = KeyStore.getInstance(KeyStore.getDefaultType());
    trust.load(null, null);
    try (FileInputStream in = new FileInputStream(p("ca.pem").toFile())) {
      trust.setCertificateEntry("ca", CertificateFactory.getInstance("X.509").generateCertificate(in));
    }
    TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
    tmf.init(trust);
    SSLContext ctx = SSLContext.getInstance("TLS");
    ctx.init(null, tmf.getTrustManagers(), null);
    try (SSLSocket s = (SSLSocket) ctx.getSocketFactory().createSocket("127.0.0.1", port)) {
      s.setSSLParameters(withAlpn(s.getSSLParameters()));
      s.startHandshake();
      X509Certificate cert = (X509Certificate) s.getSession().getPeerCertificates()[0];
      return cert.getSubjectX500Principal().getName().replaceFirst("^CN=", "").replaceFirst(",.*", "");
    }
  }

  private static javax.net.ssl.SSLParameters withAlpn(javax.net.ssl.SSLParameters p) {
    p.setApplicationProtocols(new String[] {"h2"}); // gRPC servers refuse TLS without h2
    return p;
  }
}
