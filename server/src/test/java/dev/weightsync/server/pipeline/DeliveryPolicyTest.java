package dev.weightsync.server.pipeline;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;

class DeliveryPolicyTest {

  @Test
  void allNeedsEveryEngine() {
    assertThat(DeliveryPolicy.ALL.required(3)).isEqualTo(3);
    assertThat(DeliveryPolicy.ALL.required(0)).isZero();
  }

  @Test
  void quorumRoundsUpAndNeedsAtLeastOne() {
    DeliveryPolicy half = DeliveryPolicy.quorum(0.5);
    assertThat(half.required(3)).isEqualTo(2);
    assertThat(half.required(4)).isEqualTo(2);
    assertThat(half.required(1)).isEqualTo(1);
    assertThat(DeliveryPolicy.quorum(0.6).required(5)).isEqualTo(3); // 3.0, not 4
    assertThat(DeliveryPolicy.quorum(0.01).required(3)).isEqualTo(1);
    assertThat(DeliveryPolicy.quorum(1.0).required(3)).isEqualTo(3);
  }
}
