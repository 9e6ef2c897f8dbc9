package dev.weightsync.server.security;

import io.grpc.Context;
import io.grpc.Contexts;
import io.grpc.Grpc;
import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import javax.net.ssl.SSLPeerUnverifiedException;
import javax.net.ssl.SSLSession;

/**
 * Who a call comes from, for sharing the sidecar's streams fairly: what authenticated it (the
 * bearer token's line in the token file, or the client certificate's subject; "anonymous" without
 * either), then the name the client declares in {@code weightsync-caller} metadata (the clients
 * send host:pid), or, when it declares none, the peer's address without its port.
 *
 * <p>The declared name is the caller's word: a caller holding a valid token (every trainer of a
 * deployment may share one) can declare many names and take more than one share. What stops it
 * then is that a stream must keep sending: an idle one is ended after header-timeout or the part
 * timeout. Without authentication anyone who can reach the port can do the same, which is why a
 * non-loopback listen address needs a token or mutual TLS.
 */
public final class Caller implements ServerInterceptor {

  /** The metadata key clients put their name in. */
  public static final Metadata.Key<String> DECLARED =
      Metadata.Key.of("weightsync-caller", Metadata.ASCII_STRING_MARSHALLER);
  /** Set by {@link BearerTokenInterceptor}: which token the call presented. */
  static final Context.Key<String> PRINCIPAL = Context.key("weightsync-principal");
  private static final Context.Key<String> IDENTITY = Context.key("weightsync-caller");
  private static final int MAX_DECLARED = 64;

  /** The identity of the call being handled now ("anonymous" outside a call). */
  public static String current() {
    String id = IDENTITY.get();
    return id == null ? "anonymous" : id;
  }

  @Override
  public <Q, R> ServerCall.Listener<Q> interceptCall(ServerCall<Q, R> call, Metadata headers,
      ServerCallHandler<Q, R> next) {
    String principal = PRINCIPAL.get();
    if (principal == null) {
      principal = certificateSubject(call.getAttributes().get(Grpc.TRANSPORT_ATTR_SSL_SESSION));
    }
    String declared = headers.get(DECLARED);
    String who = declared != null && !declared.isBlank() ? clip(declared)
        : peer(call.getAttributes().get(Grpc.TRANSPORT_ATTR_REMOTE_ADDR));
    String identity = "caller '" + (principal == null ? "anonymous" : principal) + " " + who + "'";
    return Contexts.interceptCall(Context.current().withValue(IDENTITY, identity), call, headers,
        next);
  }

  private static String certificateSubject(SSLSession session) {
    if (session == null) {
      return null;
    }
    try {
      return "cert " + clip(session.getPeerPrincipal().getName());
    } catch (SSLPeerUnverifiedException e) {
      return null; // TLS without a client certificate
    }
  }

  private static String peer(SocketAddress a) {
    if (a instanceof InetSocketAddress i) {
      return i.getAddress() != null ? i.getAddress().getHostAddress() : i.getHostString();
    }
    return a == null ? "unknown" : "local"; // a Unix socket: the file's mode says who may connect
  }

  /** At most 64 printable ASCII characters: the name appears in status messages and logs. */
  private static String clip(String s) {
    StringBuilder b = new StringBuilder();
    s.chars().limit(MAX_DECLARED).forEach(c -> b.append(c >= 0x20 && c < 0x7F ? (char) c : '?'));
    return s.length() > MAX_DECLARED ? b + "..." : b.toString();
  }
}
