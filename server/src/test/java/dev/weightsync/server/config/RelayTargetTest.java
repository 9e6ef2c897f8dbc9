package dev.weightsync.server.config;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class RelayTargetTest {

  @Test
  void parsesPlainAndDnsTargets() throws Exception {
    RelayTarget plain = RelayTarget.parse("engine-0.engines:50051");
    assertThat(plain.everyAddress()).isFalse();
    assertThat(plain.resolve()).containsExactly("engine-0.engines:50051"); // the channel resolves
    RelayTarget dns = RelayTarget.parse("dns:///localhost:6000");
    assertThat(dns.everyAddress()).isTrue();
    assertThat(dns.toString()).isEqualTo("dns:///localhost:6000");
    assertThat(dns.resolve()).contains("127.0.0.1:6000").allMatch(a -> a.endsWith(":6000"));
    assertThat(RelayTarget.parse("[::1]:7000").resolve()).containsExactly("[::1]:7000");
  }

  @Test
  void refusesWhatIsNotATarget() {
    for (String bad : List.of("engines", "engines:", ":50051", "engines:0", "engines:99999",
        "dns:///engines", "engines:http")) {
      assertThatThrownBy(() -> RelayTarget.parse(bad)).as(bad)
          .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("relay-to");
    }
  }

  @Test
  void rolesAndRelayFlagsMustFitTogether() {
    Map<String, String> env = Map.of();
    assertThatThrownBy(() -> ConfigLoader.load(null, env, Map.of("role", "trainer")))
        .hasMessageContaining("needs at least one relay-to");
    assertThatThrownBy(() -> ConfigLoader.load(null, env, Map.of("relay-to", "a:1")))
        .hasMessageContaining("relay-to is for role trainer");
    assertThatThrownBy(() -> ConfigLoader.load(null, env, Map.of("role", "trainer",
        "relay-to", "a:1", "sglang-url", "http://e:30000")))
        .hasMessageContaining("drives no engine");
    assertThatThrownBy(() -> ConfigLoader.load(null, env, Map.of("policy", "most")))
        .hasMessageContaining("policy must be all or quorum");
    assertThatThrownBy(() -> ConfigLoader.load(null, env, Map.of("quorum", 1.5)))
        .hasMessageContaining("quorum must be a fraction");
    assertThatThrownBy(() -> ConfigLoader.load(null, env, Map.of("role", "observer")))
        .hasMessageContaining("role must be trainer, engine or both");
  }

  @Test
  void relayTargetsComeFromTheEnvironmentAsACommaList() throws Exception {
    SidecarConfig c = ConfigLoader.load(null, Map.of("WEIGHTSYNC_ROLE", "trainer",
        "WEIGHTSYNC_RELAY_TO", "a:1, dns:///engines.ns.svc:50051"), Map.of());
    assertThat(c.relayTo()).containsExactly("a:1", "dns:///engines.ns.svc:50051");
  }
}
