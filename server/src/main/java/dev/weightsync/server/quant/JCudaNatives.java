package dev.weightsync.server.quant;

import dev.weightsync.core.checkpoint.CheckpointConverter;
import java.io.File;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Loads JCuda's native driver library without leaving it behind. JCuda unpacks the library from
 * its jar into {@code java.io.tmpdir} and never removes it (on a machine without a GPU the load
 * then fails and the file stays for nothing); here it unpacks into a private folder that is
 * deleted right after the load, successful or not (Linux keeps a loaded library's pages).
 */
final class JCudaNatives {
  private JCudaNatives() {}

  private static boolean attempted;

  /**
   * Loads {@code jcuda.driver.JCudaDriver} once.
   *
   * @throws LinkageError when the native library or the CUDA driver cannot be loaded
   */
  static synchronized void load() {
    if (attempted) {
      initialize(); // loaded, or fails again as it did the first time
      return;
    }
    attempted = true;
    Path dir;
    try {
      pinTemporaryFolders();
      dir = Files.createTempDirectory("weightsync-jcuda-");
    } catch (IOException e) {
      initialize(); // no private folder: let JCuda use the shared one
      return;
    }
    String shared = System.getProperty("java.io.tmpdir");
    System.setProperty("java.io.tmpdir", dir.toString());
    try {
      initialize();
    } finally {
      System.setProperty("java.io.tmpdir", shared);
      try {
        CheckpointConverter.deleteTree(dir);
      } catch (IOException ignored) {
        // a leftover private folder is harmless
      }
    }
  }

  private static void initialize() {
    try {
      Class.forName("jcuda.driver.JCudaDriver", true, JCudaNatives.class.getClassLoader());
    } catch (ClassNotFoundException e) {
      throw new NoClassDefFoundError("jcuda.driver.JCudaDriver: " + e.getMessage());
    } catch (ExceptionInInitializerError e) {
      throw e.getCause() instanceof LinkageError l ? l : e;
    }
  }

  /**
   * The JDK and Netty read java.io.tmpdir once and keep it; read it now, so that the moment it
   * names the private folder cannot become their temporary folder for good.
   */
  private static void pinTemporaryFolders() throws IOException {
    Files.delete(Files.createTempFile("weightsync-", ".probe"));
    if (!File.createTempFile("weightsync-", ".probe").delete()) {
      throw new IOException("cannot delete a temporary file");
    }
    try {
      io.netty.util.internal.PlatformDependent.tmpdir();
    } catch (LinkageError ignored) {
      // Netty is not on the class path (convert): nothing to pin
    }
  }
}
