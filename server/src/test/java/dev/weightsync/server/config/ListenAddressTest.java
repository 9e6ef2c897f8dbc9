package dev.weightsync.server.config;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.file.Path;
import org.junit.jupiter.api.Test;

class ListenAddressTest {

  @Test
  void hostsPortsAndSocketsAreReadAndBadOnesNamed() {
    assertThat(ListenAddress.parse("0.0.0.0:50051")).isEqualTo(new ListenAddress("0.0.0.0", 50051, null));
    assertThat(ListenAddress.parse("[::1]:7").host()).isEqualTo("::1");
    assertThat(ListenAddress.parse("[::1]:7").toString()).isEqualTo("[::1]:7");
    assertThat(ListenAddress.parse("unix:///run/ws/grpc.sock").socket())
        .isEqualTo(Path.of("/run/ws/grpc.sock"));
    assertThat(ListenAddress.parse("unix:/run/ws/grpc.sock").unix()).isTrue();
    assertThatThrownBy(() -> ListenAddress.parse("unix://relative.sock")).hasMessageContaining("absolute");
    assertThatThrownBy(() -> ListenAddress.parse("50051")).hasMessageContaining("HOST:PORT");
    assertThatThrownBy(() -> ListenAddress.parse(":50051")).hasMessageContaining("no host");
    assertThatThrownBy(() -> ListenAddress.parse("h:http")).hasMessageContaining("not a number");
    assertThatThrownBy(() -> ListenAddress.parse("h:70000")).hasMessageContaining("0..65535");
  }
}
