package dev.weightsync.server.relay;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;

class RelayAdapterTest {

  @Test
  void aPartIsSplitIntoRelayStreamsSubPartsWhileTheVersionsStreamsFitTheBudget() {
    assertThat(RelayAdapter.subParts(4, 1)).isEqualTo(4);
    assertThat(RelayAdapter.subParts(4, 8)).isEqualTo(4); // 32 streams at the target
    assertThat(RelayAdapter.subParts(4, 16)).isEqualTo(2);
    assertThat(RelayAdapter.subParts(4, 33)).as("never fewer than one").isEqualTo(1);
    assertThat(RelayAdapter.subParts(1, 1)).isEqualTo(1);
    assertThat(RelayAdapter.subParts(64, 1)).isEqualTo(RelayAdapter.STREAM_BUDGET);
  }
}
