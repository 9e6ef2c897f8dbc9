package dev.weightsync.server.security;

import io.grpc.Context;
import io.grpc.Contexts;
import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.Status;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.List;

/**
 * Requires {@code authorization: Bearer <token>} on the calls of one gRPC service (WeightSync:
 * updates and status), checked when the call starts, before any message is requested, so an
 * unauthenticated caller cannot make the sidecar buffer a byte. Tokens are compared in constant
 * time. Other services (health, reflection) stay open.
 */
public final class BearerTokenInterceptor implements ServerInterceptor {

  private static final Metadata.Key<String> AUTHORIZATION =
      Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);
  private static final String PREFIX = "Bearer ";

  private final String service;
  private final List<byte[]> tokens;

  public BearerTokenInterceptor(String service, List<String> tokens) {
    if (tokens.isEmpty()) {
      throw new IllegalArgumentException("no tokens: an empty token file would lock everyone out");
    }
    this.service = service;
    this.tokens = tokens.stream().map(t -> t.getBytes(StandardCharsets.UTF_8)).toList();
  }

  /** One token per line; blank lines and lines starting with # are skipped. */
  public static List<String> readTokens(Path file) throws IOException {
    List<String> tokens = Files.readAllLines(file).stream().map(String::trim)
        .filter(l -> !l.isEmpty() && !l.startsWith("#")).toList();
    if (tokens.isEmpty()) {
      throw new IllegalArgumentException(file + ": no tokens in the auth token file");
    }
    return tokens;
  }

  @Override
  public <Q, R> ServerCall.Listener<Q> interceptCall(ServerCall<Q, R> call, Metadata headers,
      ServerCallHandler<Q, R> next) {
    if (!service.equals(call.getMethodDescriptor().getServiceName())) {
      return next.startCall(call, headers);
    }
    String value = headers.get(AUTHORIZATION);
    String problem = null;
    int token = -1;
    if (value == null || !value.startsWith(PREFIX)) {
      problem = "missing bearer token (send 'authorization: Bearer <token>')";
    } else {
      token = match(value.substring(PREFIX.length()).trim().getBytes(StandardCharsets.UTF_8));
      if (token < 0) {
        problem = "the bearer token is not accepted";
      }
    }
    if (problem != null) {
      call.close(Status.UNAUTHENTICATED.withDescription(problem), new Metadata());
      return new ServerCall.Listener<>() {};
    }
    // which token, for Caller (the token's number in the file, never the token itself)
    return Contexts.interceptCall(Context.current().withValue(Caller.PRINCIPAL,
        "token " + (token + 1)), call, headers, next);
  }

  /**
   * The index of the token {@code given} equals, or -1: constant time per token
   * (MessageDigest.isEqual), and every token is always compared.
   */
  private int match(byte[] given) {
    int found = -1;
    for (int i = 0; i < tokens.size(); i++) {
      if (MessageDigest.isEqual(tokens.get(i), given) && found < 0) {
        found = i;
      }
    }
    return found;
  }
}
