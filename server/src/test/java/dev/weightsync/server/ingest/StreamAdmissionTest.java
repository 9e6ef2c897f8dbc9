package dev.weightsync.server.ingest;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.grpc.Status;
import io.grpc.StatusException;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

class StreamAdmissionTest {

  @Test
  void oneCallerGetsItsShareAndTheRestStaysForOthers() throws Exception {
    StreamAdmission a = new StreamAdmission(10, 4);
    List<StreamAdmission.Slot> mine = new ArrayList<>();
    for (int i = 0; i < 4; i++) {
      mine.add(a.admit("caller 'x'"));
    }
    assertThatThrownBy(() -> a.admit("caller 'x'")).isInstanceOf(StatusException.class)
        .satisfies(e -> assertThat(((StatusException) e).getStatus().getCode())
            .isEqualTo(Status.Code.RESOURCE_EXHAUSTED))
        .hasMessageContaining("caller 'x' has 4 UpdateWeights streams open")
        .hasMessageContaining("max-streams-per-caller=4");
    for (int i = 0; i < 4; i++) {
      a.admit("caller 'y'");
    }
    a.admit("caller 'z'");
    a.admit("caller 'z'");
    assertThatThrownBy(() -> a.admit("caller 'w'")).hasMessageContaining("10 UpdateWeights"
        + " streams are open (max-streams)");
    mine.get(0).release();
    mine.get(0).release(); // once only
    assertThat(a.open()).isEqualTo(9);
    a.admit("caller 'w'");
    assertThatThrownBy(() -> a.admit("caller 'x'")).hasMessageContaining("max-streams");
  }
}
