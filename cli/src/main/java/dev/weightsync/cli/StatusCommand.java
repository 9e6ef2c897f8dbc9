package dev.weightsync.cli;

import dev.weightsync.client.WeightSyncClient;
import dev.weightsync.proto.v1.EngineStatus;
import dev.weightsync.proto.v1.GetStatusResponse;
import dev.weightsync.proto.v1.VersionProgress;
import io.grpc.StatusRuntimeException;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;

/** {@code weightsync status}: what a sidecar is doing. */
@Command(name = "status", mixinStandardHelpOptions = true, description = "Show a sidecar's state.")
final class StatusCommand implements Callable<Integer> {

  @picocli.CommandLine.Mixin SidecarConnection sidecar = new SidecarConnection();

  @Override
  public Integer call() throws java.io.IOException {
    try (WeightSyncClient client = sidecar.connect()) {
      GetStatusResponse s = client.status();
      System.out.printf("role %s, format %s, device %s, up %.0f s, last loaded version '%s'%n",
          s.getRole(), s.getFormat(), s.getDevice(), s.getUptimeSeconds(), s.getLastVersion());
      for (VersionProgress p : s.getInProgressList()) {
        System.out.printf("in progress: version %s, %d part(s), committed %s, receiving %s%n",
            p.getWeightVersion(), p.getPartCount(), p.getPartsCommittedList(),
            p.getPartsReceivingList());
      }
      if (s.getEnginesList().isEmpty() && !s.getRole().equals("trainer")) {
        System.out.println("no engine configured (--sglang-url, --vllm-url): versions are staged"
            + " but no engine is told to load them");
      }
      for (EngineStatus e : s.getEnginesList()) {
        System.out.printf("engine %s: %s, version '%s'%s%s%n", e.getEngine(), e.getState(),
            e.getLoadedVersion(), e.getOutOfDate() ? ", OUT OF DATE (missed the last version)" : "",
            e.getLastError().isEmpty() ? "" : ", last error: " + e.getLastError());
      }
      return 0;
    } catch (StatusRuntimeException e) {
      System.err.println("error: " + CallErrors.describe(sidecar.target, e));
      return 1;
    }
  }
}
