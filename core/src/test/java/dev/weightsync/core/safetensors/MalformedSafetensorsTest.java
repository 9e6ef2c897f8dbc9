package dev.weightsync.core.safetensors;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.weightsync.core.tensor.DType;
import dev.weightsync.core.tensor.TensorSpec;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class MalformedSafetensorsTest {

  @TempDir Path tmp;

  private Path file(String header, int dataBytes) throws IOException {
    byte[] h = header.getBytes(StandardCharsets.UTF_8);
    ByteBuffer b = ByteBuffer.allocate(8 + h.length + dataBytes).order(ByteOrder.LITTLE_ENDIAN);
    b.putLong(h.length).put(h);
    Path p = tmp.resolve("bad.safetensors");
    Files.write(p, b.array());
    return p;
  }

  private void assertRefused(String header, int dataBytes, String... fragments) throws IOException {
    Path p = file(header, dataBytes);
    var thrown = assertThatThrownBy(() -> SafetensorsFile.open(p).close())
        .isInstanceOf(SafetensorsFormatException.class)
        .hasMessageContaining(p.toString());
    for (String f : fragments) {
      thrown.hasMessageContaining(f);
    }
  }

  @Test
  void badJson() throws IOException {
    assertRefused("{\"a\": {\"dtype\": \"BF16\",", 0, "not valid JSON");
  }

  @Test
  void unknownDtype() throws IOException {
    assertRefused("{\"w\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2,
        "tensor 'w'", "unknown dtype 'Q4'");
  }

  @Test
  void offsetsOutOfRange() throws IOException {
    assertRefused("{\"w\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]}}", 4,
        "tensor 'w'", "past the end");
  }

  @Test
  void overlappingTensors() throws IOException {
    assertRefused("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
        + "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}", 6, "tensor 'b'", "overlap");
  }

  @Test
  void shapeTimesDtypeDisagreesWithLength() throws IOException {
    assertRefused("{\"w\":{\"dtype\":\"BF16\",\"shape\":[3,2],\"data_offsets\":[0,10]}}", 10,
        "tensor 'w'", "12 bytes but data_offsets span 10");
  }

  @Test
  void oversizedAndTruncatedHeaders() throws IOException {
    Path huge = tmp.resolve("huge.safetensors");
    Files.write(huge, ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN)
        .putLong(1L << 40).array());
    assertThatThrownBy(() -> SafetensorsFile.open(huge)).hasMessageContaining("exceeds the limit");
    Path past = tmp.resolve("past.safetensors");
    Files.write(past, ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN).putLong(100).array());
    assertThatThrownBy(() -> SafetensorsFile.open(past)).hasMessageContaining("runs past the end");
    Path tiny = tmp.resolve("tiny.safetensors");
    Files.write(tiny, new byte[3]);
    assertThatThrownBy(() -> SafetensorsFile.open(tiny)).hasMessageContaining("too short");
  }

  @Test
  void negativeShapesHolesAndDuplicateKeys() throws IOException {
    assertRefused("{\"w\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,0]}}", 0,
        "tensor 'w'", "non-negative");
    assertRefused("{\"w\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]}}", 4,
        "tensor 'w'", "hole");
    assertRefused("{\"w\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
        + "\"w\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2, "Duplicate field");
  }

  @Test
  void writerRoundTripsAndRefusesIncompleteTensors() throws IOException {
    Path p = tmp.resolve("ok.safetensors");
    List<TensorSpec> specs = List.of(TensorSpec.of("a", DType.BF16, 2, 3), TensorSpec.of("b", DType.I32, 1));
    try (SafetensorsWriter w = SafetensorsWriter.create(p, specs, Map.of("format", "pt"))) {
      w.write("b", 0, ByteBuffer.wrap(new byte[] {1, 2, 3, 4}));
      w.write("a", 6, ByteBuffer.wrap(new byte[] {7, 8, 9, 10, 11, 12}));
      w.write("a", 0, ByteBuffer.wrap(new byte[] {1, 2, 3, 4, 5, 6}));
      w.finish(false);
    }
    try (SafetensorsFile f = SafetensorsFile.open(p)) {
      assertThat(f.metadata()).containsEntry("format", "pt");
      assertThat(f.spec("a")).isEqualTo(specs.get(0));
      ByteBuffer a = f.source("a").window(0, 12);
      assertThat(a.get(11)).isEqualTo((byte) 12);
    }
    Path q = tmp.resolve("incomplete.safetensors");
    SafetensorsWriter w = SafetensorsWriter.create(q, specs, Map.of());
    w.write("a", 0, ByteBuffer.wrap(new byte[12]));
    assertThatThrownBy(() -> w.finish(false)).hasMessageContaining("tensor 'b' received 0 of 4 bytes");
  }

  @Test
  void filesLargerThanTwoGibibytesAreRead() throws IOException {
    // A sparse file: a 2.5 GiB tensor followed by a small one whose bytes lie past 2 GiB.
    long big = 5L << 29;
    Path p = tmp.resolve("large.safetensors");
    List<TensorSpec> specs = List.of(TensorSpec.of("big", DType.U8, big), TensorSpec.of("tail", DType.I64, 2));
    long tailStart;
    try (SafetensorsWriter w = SafetensorsWriter.create(p, specs, Map.of())) {
      tailStart = w.fileSize() - 16;
      w.write("tail", 0, ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN).putLong(7).putLong(-9).flip());
    }
    try (RandomAccessFile raf = new RandomAccessFile(p.toFile(), "rw")) {
      raf.seek(9L << 28); // a byte of "big" past 2 GiB
      raf.write(42);
      assertThat(raf.length()).isEqualTo(tailStart + 16);
    }
    try (SafetensorsFile f = SafetensorsFile.open(p)) {
      ByteBuffer tail = f.source("tail").window(0, 16);
      assertThat(tail.getLong(0)).isEqualTo(7);
      assertThat(tail.getLong(8)).isEqualTo(-9);
      long headerEnd = tailStart - big;
      ByteBuffer w = f.source("big").window((9L << 28) - headerEnd, 1);
      assertThat(w.get(0)).isEqualTo((byte) 42);
    }
  }
}
