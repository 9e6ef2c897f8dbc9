package dev.weightsync.it;

import static dev.weightsync.it.SessionFixtures.await;
import static dev.weightsync.it.SessionFixtures.awaitQuiet;
import static dev.weightsync.it.SessionFixtures.delivery;
import static org.assertj.core.api.Assertions.assertThat;

import dev.weightsync.cli.engine.RouteFault;
import dev.weightsync.cli.engine.StandInEngine;
import dev.weightsync.server.engine.EngineOutcome;
import dev.weightsync.server.engine.EnginePaths;
import dev.weightsync.server.engine.EngineResult;
import dev.weightsync.server.engine.EngineWeights;
import dev.weightsync.server.engine.LeasedEngineAdapter;
import dev.weightsync.server.engine.SessionLedger;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.stream.Stream;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The SGLang update session, row by row: every step (pause, flush, begin, load, end, confirm,
 * continue) × every fault the engine can give there ({@link RouteFault}: an HTTP 400 or 500,
 * {@code success:false}, an unreadable answer, a dropped connection, an answer after the
 * timeout, no answer at all) × what the engine held before (serving, paused with clean weights,
 * possibly mixed), in this JVM against the stand-in engine over real HTTP. Each row asserts the
 * outcome, what the engine serves and whether it is paused, what status and the ledger say, that
 * a load whose attempt may still run is not sent again, that the engine never received a resume
 * while its weights were mixed, and that the next version brings it back.
 */
class EngineSessionTableIT {

  @TempDir Path tmp;

  enum Step {
    PAUSE("/pause_generation"), FLUSH("/flush_cache"), BEGIN("/begin_weight_update"),
    LOAD("/update_weights_from_disk"), END("/end_weight_update"), CONFIRM("/get_weight_version"),
    CONTINUE("/continue_generation");

    final String route;

    Step(String route) {
      this.route = route;
    }
  }

  enum Prior { SERVING, PAUSED_CLEAN, MAYBE_MIXED }

  static final Duration TIMEOUT = Duration.ofMillis(150);
  static final long LATE_MS = 300; // a SLOW answer (and a HANG) outlasts the sidecar's timeout

  static Stream<Arguments> rows() {
    List<Arguments> rows = new ArrayList<>();
    for (Step step : Step.values()) {
      for (RouteFault.Kind fault : RouteFault.Kind.values()) {
        for (Prior prior : Prior.values()) {
          rows.add(Arguments.of(step, fault, prior));
        }
      }
    }
    return rows.stream();
  }

  /** What the rule says a row must end in. */
  record Expected(EngineOutcome outcome, String state, boolean paused) {}

  static Expected expected(Step step, RouteFault.Kind fault, Prior prior) {
    boolean workDone = fault == RouteFault.Kind.GARBAGE || fault == RouteFault.Kind.DROP
        || fault == RouteFault.Kind.SLOW;
    return switch (step) {
      case PAUSE, FLUSH -> prior == Prior.MAYBE_MIXED
          ? new Expected(EngineOutcome.FAILED_PAUSED, "MAYBE_MIXED", true)
          : new Expected(EngineOutcome.FAILED_UNTOUCHED, "SERVING", false);
      case BEGIN, LOAD, END, CONFIRM -> new Expected(EngineOutcome.FAILED_PAUSED, "MAYBE_MIXED", true);
      // loaded and confirmed, the resume failed: paused with complete weights — unless the
      // resume did happen and only its answer was lost
      case CONTINUE -> new Expected(EngineOutcome.FAILED_PAUSED, "PAUSED_CLEAN", !workDone);
    };
  }

  @ParameterizedTest(name = "{0} answers {1}, engine {2}")
  @MethodSource("rows")
  void row(Step step, RouteFault.Kind fault, Prior prior) throws Exception {
    Path staging = Files.createDirectories(tmp.resolve("staging"));
    try (StandInEngine engine = new StandInEngine(0, null).start()) {
      LeasedEngineAdapter adapter = prepare(engine, staging, prior);
      engine.faults(f -> f.routes.put(step.route, new RouteFault(fault, -1, LATE_MS)));
      engine.clearCalls();

      EngineResult r = adapter.update(delivery(staging, "v3"));
      engine.faults(f -> f.routes.clear());
      Expected want = expected(step, fault, prior);
      String row = step + "/" + fault + "/" + prior + ": " + r.outcome() + " " + r.message();

      assertThat(r.outcome()).as(row).isEqualTo(want.outcome());
      awaitQuiet(engine); // late answers and dropped calls have been handled by the engine
      assertThat(engine.violations()).as(row + " (resumed over mixed weights)").isZero();
      assertThat(engine.paused()).as(row + " paused").isEqualTo(want.paused());
      assertThat(adapter.state().state()).as(row + " status").isEqualTo(want.state());
      EngineWeights.Kind ledger = new SessionLedger(staging).get(adapter.name())
          .map(EngineWeights::kind).orElse(EngineWeights.Kind.SERVING);
      assertThat(ledger.name()).as(row + " ledger").isEqualTo(want.state());
      if (r.outcome() == EngineOutcome.LOADED) {
        assertThat(engine.weightVersion()).isEqualTo("v3");
      }
      if (!engine.paused()) {
        assertThat(engine.mixed()).as(row + " serves a mix").isFalse();
      }
      if (step == Step.LOAD) {
        long loads = engine.routes().stream().filter(Step.LOAD.route::equals).count();
        boolean mayStillRun = fault != RouteFault.Kind.HTTP_400 && fault != RouteFault.Kind.HTTP_500
            && fault != RouteFault.Kind.SUCCESS_FALSE;
        assertThat(loads).as(row + " loads sent").isEqualTo(mayStillRun ? 1 : 2);
      }
      if (want.outcome() != EngineOutcome.LOADED && want.state().equals("MAYBE_MIXED")) {
        assertThat(engine.routes()).as(row + " never resumed").doesNotContain(Step.CONTINUE.route);
      }

      EngineResult next = adapter.update(delivery(staging, "v4")); // the way out: a complete load
      assertThat(next.outcome()).as(row + " then " + next.message()).isEqualTo(EngineOutcome.LOADED);
      assertThat(engine.paused()).isFalse();
      assertThat(engine.weightVersion()).isEqualTo("v4");
      assertThat(adapter.state().state()).isEqualTo("SERVING");
      assertThat(engine.violations()).isZero();
    }
  }

  @ParameterizedTest(name = "shutdown while {0} hangs")
  @MethodSource("hangingSteps")
  void shutdownEndsTheSessionThroughItsLease(Step step, boolean interrupt) throws Exception {
    Path staging = Files.createDirectories(tmp.resolve("staging"));
    try (StandInEngine engine = new StandInEngine(0, null).start()) {
      LeasedEngineAdapter adapter = adapter(engine, staging, Duration.ofSeconds(30));
      assertThat(adapter.update(delivery(staging, "v1")).outcome()).isEqualTo(EngineOutcome.LOADED);
      engine.faults(f -> f.routes.put(step.route, new RouteFault(RouteFault.Kind.HANG, 1, 0)));
      engine.clearCalls();
      Thread[] worker = new Thread[1];
      CompletableFuture<EngineResult> r = CompletableFuture.supplyAsync(() -> {
        worker[0] = Thread.currentThread();
        return adapter.update(delivery(staging, "v2"));
      });
      await(() -> engine.routes().contains(step.route)); // the session is in that step now
      if (interrupt) {
        worker[0].interrupt(); // not a way to end a session: the lease still resumes after it
      }
      adapter.abandon();
      EngineResult result = r.get();
      assertThat(engine.violations()).isZero();
      if (step == Step.FLUSH) { // weights untouched: the lease resumes it, abandoned or not
        assertThat(result.outcome()).isEqualTo(EngineOutcome.FAILED_UNTOUCHED);
        assertThat(engine.paused()).isFalse();
        assertThat(adapter.state().state()).isEqualTo("SERVING");
      } else { // the load may still be running: left paused, recorded for the next start
        assertThat(result.outcome()).isEqualTo(EngineOutcome.FAILED_PAUSED);
        assertThat(engine.paused()).isTrue();
        assertThat(new SessionLedger(staging).get(adapter.name()).orElseThrow().kind())
            .isEqualTo(EngineWeights.Kind.MAYBE_MIXED);
      }
    }
  }

  static Stream<Arguments> hangingSteps() {
    return Stream.of(Arguments.of(Step.FLUSH, false), Arguments.of(Step.FLUSH, true),
        Arguments.of(Step.LOAD, false), Arguments.of(Step.LOAD, true));
  }

  /** An adapter whose engine is in {@code prior}, having served v1 (and failed v2 if mixed). */
  private LeasedEngineAdapter prepare(StandInEngine engine, Path staging, Prior prior) throws Exception {
    LeasedEngineAdapter a = adapter(engine, staging, TIMEOUT);
    assertThat(a.update(delivery(staging, "v1")).outcome()).isEqualTo(EngineOutcome.LOADED);
    switch (prior) {
      case SERVING -> { }
      case PAUSED_CLEAN -> { // a sidecar that paused it, and was restarted before resuming it
        new SessionLedger(staging).record(a.name(), EngineWeights.pausedClean("v1", "paused"));
        java.net.http.HttpClient.newHttpClient().send(java.net.http.HttpRequest.newBuilder(
            java.net.URI.create(engine.url() + "/pause_generation"))
            .POST(java.net.http.HttpRequest.BodyPublishers.ofString("{}")).build(),
            java.net.http.HttpResponse.BodyHandlers.discarding());
        a = adapter(engine, staging, TIMEOUT);
        assertThat(a.state().state()).isEqualTo("PAUSED_CLEAN");
        assertThat(engine.paused()).isTrue();
      }
      case MAYBE_MIXED -> {
        engine.faults(f -> f.loadFailures = 2);
        assertThat(a.update(delivery(staging, "v2")).outcome()).isEqualTo(EngineOutcome.FAILED_PAUSED);
        assertThat(a.state().state()).isEqualTo("MAYBE_MIXED");
        assertThat(engine.mixed()).isTrue();
      }
    }
    return a;
  }

  private static LeasedEngineAdapter adapter(StandInEngine engine, Path staging, Duration timeout)
      throws Exception {
    return LeasedEngineAdapter.sglang(engine.url(), "abort", new LeasedEngineAdapter.Settings(null,
        timeout, 1, Duration.ofMillis(1), false, new SessionLedger(staging), EnginePaths.same()));
  }
}
