package dev.weightsync.cli;

import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.net.ConnectException;
import java.net.UnknownHostException;

/** A failed call to a sidecar said in one line a person understands. */
final class CallErrors {
  private CallErrors() {}

  static String describe(String target, StatusRuntimeException e) {
    Status s = e.getStatus();
    if (s.getCode() == Status.Code.UNAVAILABLE) {
      for (Throwable t = e; t != null; t = t.getCause()) {
        if (t instanceof UnknownHostException) {
          return "unknown host in --target " + target + ": " + t.getMessage();
        }
        if (t instanceof ConnectException) {
          return "nothing is listening at " + target + " — is 'weightsync serve' running?";
        }
      }
      String d = String.valueOf(s.getDescription());
      if (d.contains("Unable to resolve host")) {
        return "unknown host in --target " + target;
      }
    }
    return s.getCode() + ": " + s.getDescription();
  }
}
