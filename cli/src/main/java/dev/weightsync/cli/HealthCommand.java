package dev.weightsync.cli;

import io.grpc.ManagedChannel;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse;
import io.grpc.health.v1.HealthGrpc;
import io.grpc.netty.NettyChannelBuilder;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code weightsync health}: asks a sidecar's gRPC health service, for a container HEALTHCHECK or
 * an exec probe that needs nothing but the image's own Java. Open even when tokens are required.
 */
@Command(name = "health", mixinStandardHelpOptions = true,
    description = "Exit 0 when the sidecar's gRPC health service says SERVING, else 1.")
final class HealthCommand implements Callable<Integer> {

  @Option(names = "--target", defaultValue = "127.0.0.1:50051", description = "The sidecar (default ${DEFAULT-VALUE}).")
  String target;

  @Option(names = "--service", defaultValue = "",
      description = "\"\" (default: liveness, the process serves) or weightsync.v1.WeightSync (readiness: engines answer).")
  String service;

  @Option(names = "--timeout", defaultValue = "5", description = "Seconds to wait (default ${DEFAULT-VALUE}).")
  int timeoutSeconds;

  @picocli.CommandLine.Mixin TlsOptions tls = new TlsOptions();

  @Override
  public Integer call() throws InterruptedException, java.io.IOException {
    dev.weightsync.client.ClientTls t = tls.toClientTls();
    ManagedChannel channel = (t == null
        ? NettyChannelBuilder.forTarget(target).usePlaintext()
        : NettyChannelBuilder.forTarget(target, t.credentials())).build();
    try {
      HealthCheckResponse r = HealthGrpc.newBlockingStub(channel)
          .withDeadlineAfter(timeoutSeconds, TimeUnit.SECONDS)
          .check(HealthCheckRequest.newBuilder().setService(service).build());
      System.out.println(r.getStatus());
      return r.getStatus() == HealthCheckResponse.ServingStatus.SERVING ? 0 : 1;
    } catch (StatusRuntimeException e) {
      System.out.println("UNREACHABLE: " + e.getStatus().getCode() + " "
          + (e.getStatus().getDescription() == null ? "" : e.getStatus().getDescription()));
      return 1;
    } finally {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }
}
