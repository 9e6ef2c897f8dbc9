package dev.weightsync.client;

import dev.weightsync.proto.v1.Header;
import dev.weightsync.proto.v1.UpdateWeightsResponse;
import io.grpc.Context;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.io.IOException;
import java.util.List;
import java.util.concurrent.CompletionService;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorCompletionService;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

/**
 * Streams of one push sent at once, one thread each: the parts of a version, or the sub-parts of
 * one part. A stream refused for good (a NaN, a wrong shape) would leave the others waiting for a
 * version that cannot complete, so the first failure cancels every call of the push; the error
 * thrown is the one that says why, not the ABORTED or CANCELLED of the streams stopped because of
 * it.
 */
final class ParallelPush {

  /** Sends one part (with its retries) over the connection of stream {@code index}. */
  interface PartSender {
    UpdateWeightsResponse send(int index, Header header, List<Tensor> tensors) throws IOException;
  }

  private ParallelPush() {
  }

  /** Stream {@code i} sends {@code parts.get(i)} under {@code headers.get(i)}. */
  static UpdateWeightsResponse run(List<Header> headers, List<List<Tensor>> parts,
      PartSender sender) throws IOException {
    String version = headers.get(0).getWeightVersion();
    ExecutorService senders = Executors.newFixedThreadPool(parts.size(), r -> {
      Thread t = new Thread(r, "weightsync-push-" + version);
      t.setDaemon(true);
      return t;
    });
    Context.CancellableContext calls = Context.current().withCancellation();
    CompletionService<UpdateWeightsResponse> sent = new ExecutorCompletionService<>(senders);
    try {
      for (int p = 0; p < parts.size(); p++) {
        int stream = p;
        sent.submit(calls.wrap(() -> sender.send(stream, headers.get(stream), parts.get(stream))));
      }
      UpdateWeightsResponse response = null;
      Throwable cause = null;
      for (int p = 0; p < parts.size(); p++) {
        try {
          response = sent.take().get();
        } catch (ExecutionException e) {
          cause = moreTelling(cause, e.getCause());
          calls.cancel(e.getCause());
        }
      }
      if (cause instanceof IOException io) {
        throw io;
      }
      if (cause != null) {
        throw cause instanceof StatusRuntimeException s ? s : Status.fromThrowable(cause)
            .asRuntimeException();
      }
      return response;
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw Status.CANCELLED.withDescription("interrupted").asRuntimeException();
    } finally {
      calls.cancel(null);
      senders.shutdownNow();
    }
  }

  /** The failure that says why: one the sidecar gave, not the cancellation that followed it. */
  static Throwable moreTelling(Throwable first, Throwable next) {
    if (first == null) {
      return next;
    }
    return consequence(first) && !consequence(next) ? next : first;
  }

  private static boolean consequence(Throwable t) {
    Status.Code c = Status.fromThrowable(t).getCode();
    return c == Status.Code.CANCELLED || c == Status.Code.ABORTED;
  }
}
