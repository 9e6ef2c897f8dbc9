package dev.weightsync.cli;

import dev.weightsync.core.quant.Format;
import picocli.CommandLine.ITypeConverter;

/** Parses {@code fp8-block} and friends. */
final class FormatConverter implements ITypeConverter<Format> {
  @Override
  public Format convert(String value) {
    return Format.parse(value);
  }
}
