package dev.weightsync.cli;

import picocli.CommandLine.IVersionProvider;

/** The version of the jar, as Maven wrote it into the manifest. */
final class Version implements IVersionProvider {
  @Override
  public String[] getVersion() {
    String v = Version.class.getPackage().getImplementationVersion();
    return new String[] {"weightsync " + (v == null ? "(development build)" : v)};
  }
}
