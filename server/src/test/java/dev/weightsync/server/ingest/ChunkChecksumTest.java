package dev.weightsync.server.ingest;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.weightsync.proto.v1.Header;
import io.grpc.StatusException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class ChunkChecksumTest {

  private static ChunkChecksum of(Map<String, String> options) throws StatusException {
    return ChunkChecksum.of(Header.newBuilder().putAllOptions(options).build());
  }

  @Test
  void theHeaderNamesTheChecksumAndCrc32cIsTheDefault() throws Exception {
    assertThat(of(Map.of())).isEqualTo(ChunkChecksum.CRC32C);
    assertThat(of(Map.of("checksum", "crc32"))).isEqualTo(ChunkChecksum.CRC32);
    assertThat(of(Map.of("checksum", "off"))).isEqualTo(ChunkChecksum.OFF);
    assertThat(of(Map.of("crc32c", "off"))).isEqualTo(ChunkChecksum.OFF);
    assertThat(of(Map.of("crc32c", "on"))).isEqualTo(ChunkChecksum.CRC32C);
    assertThatThrownBy(() -> of(Map.of("checksum", "md5"))).hasMessageContaining("crc32c, crc32 or off");
    assertThatThrownBy(() -> of(Map.of("crc32c", "maybe"))).hasMessageContaining("on or off");
    assertThatThrownBy(() -> of(Map.of("crc32c", "off", "checksum", "crc32")))
        .hasMessageContaining("both");
  }

  @Test
  void theStandardCheckValuesOverPiecesCutAnywhere() {
    byte[] text = "123456789".getBytes(StandardCharsets.US_ASCII);
    List<ByteBuffer> pieces = List.of(ByteBuffer.wrap(text, 0, 4).slice(),
        ByteBuffer.allocateDirect(5).put(text, 4, 5).flip());
    assertThat(ChunkChecksum.CRC32C.matches(pieces, 0xE3069283)).isTrue();
    assertThat(ChunkChecksum.CRC32.matches(pieces, 0xCBF43926)).isTrue();
    assertThat(ChunkChecksum.CRC32.matches(pieces, 0xE3069283)).isFalse();
    assertThat(ChunkChecksum.OFF.matches(pieces, 0)).isTrue();
    assertThat(pieces.get(1).remaining()).as("the pieces are left as they were").isEqualTo(5);
  }
}
