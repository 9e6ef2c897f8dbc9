package dev.weightsync.it;

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
import java.util.stream.Stream;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The vLLM update session, row by row, as EngineSessionTableIT has SGLang's: every step (pause,
 * init, start, update_weights, finish, confirm, resume) × every fault ({@link RouteFault}) × what
 * the engine held before, against the stand-in's vLLM routes over real HTTP. Each row asserts the
 * outcome, whether the engine is paused, status and the ledger, that no update step was sent
 * twice (a start again only after the re-init a restarted engine asks for), that the engine was
 * never resumed while its weights may be mixed, and the way back: the
 * next version loads, or, where vLLM itself still counts the failed update as in progress, the
 * next version is refused saying so and a restarted engine loads the one after.
 */
class VllmSessionTableIT {

  @TempDir Path tmp;

  enum Step {
    PAUSE("/pause"), INIT("/init_weight_transfer_engine"), START("/start_weight_update"),
    LOAD("/update_weights"), FINISH("/finish_weight_update"), CONFIRM("/weight_info"),
    RESUME("/resume");

    final String route;

    Step(String route) {
      this.route = route;
    }
  }

  enum Prior { SERVING, PAUSED_CLEAN, MAYBE_MIXED }

  static final Duration TIMEOUT = Duration.ofMillis(150);
  static final long LATE_MS = 300;

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

  record Expected(EngineOutcome outcome, String state, boolean paused) {}

  /** Whether the route did its work under the fault (only its answer was spoiled). */
  static boolean workDone(RouteFault.Kind fault) {
    return fault == RouteFault.Kind.GARBAGE || fault == RouteFault.Kind.DROP
        || fault == RouteFault.Kind.SLOW;
  }

  static Expected expected(Step step, RouteFault.Kind fault, Prior prior) {
    return switch (step) {
      case PAUSE, INIT -> prior == Prior.MAYBE_MIXED
          ? new Expected(EngineOutcome.FAILED_PAUSED, "MAYBE_MIXED", true)
          : new Expected(EngineOutcome.FAILED_UNTOUCHED, "SERVING", false);
      case START, LOAD, FINISH, CONFIRM ->
          new Expected(EngineOutcome.FAILED_PAUSED, "MAYBE_MIXED", true);
      case RESUME -> new Expected(EngineOutcome.FAILED_PAUSED, "PAUSED_CLEAN", !workDone(fault));
    };
  }

  /**
   * Whether vLLM's HTTP layer still counts the faulted update as in progress: a start that
   * happened (not on the engine restarted since the mixed prior: its first start is refused as
   * not initialized), any load after a start, a finish that did not happen.
   */
  static boolean leftInProgress(Step step, RouteFault.Kind fault, Prior prior) {
    return switch (step) {
      case START -> workDone(fault) && prior != Prior.MAYBE_MIXED;
      case LOAD -> true;
      case FINISH -> !workDone(fault);
      default -> false;
    };
  }

  @ParameterizedTest(name = "{0} answers {1}, engine {2}")
  @MethodSource("rows")
  void row(Step step, RouteFault.Kind fault, Prior prior) throws Exception {
    Path staging = Files.createDirectories(tmp.resolve("staging"));
    try (StandInEngine engine = new StandInEngine(0, null, StandInEngine.Api.VLLM).start()) {
      LeasedEngineAdapter adapter = prepare(engine, staging, prior);
      if (step == Step.INIT) { // a restarted sidecar: its first session initializes the engine
        adapter = adapter(engine, staging);
      }
      engine.faults(f -> f.routes.put(step.route, new RouteFault(fault, -1, LATE_MS)));
      engine.clearCalls();

      EngineResult r = adapter.update(delivery(staging, "v3"));
      engine.faults(f -> f.routes.clear());
      Expected want = expected(step, fault, prior);
      String row = step + "/" + fault + "/" + prior + ": " + r.outcome() + " " + r.message();

      assertThat(r.outcome()).as(row).isEqualTo(want.outcome());
      awaitQuiet(engine);
      assertThat(engine.violations()).as(row + " (resumed over mixed weights)").isZero();
      assertThat(engine.paused()).as(row + " paused").isEqualTo(want.paused());
      // a restarted sidecar (the INIT rows) knows a serving engine only as UNKNOWN
      boolean unknown = step == Step.INIT && prior == Prior.SERVING;
      assertThat(adapter.state().state()).as(row + " status")
          .isEqualTo(unknown ? "UNKNOWN" : want.state());
      EngineWeights.Kind ledger = new SessionLedger(staging).get(adapter.name())
          .map(EngineWeights::kind).orElse(EngineWeights.Kind.SERVING);
      assertThat(ledger.name()).as(row + " ledger").isEqualTo(want.state());
      for (Step s : List.of(Step.LOAD, Step.FINISH)) {
        assertThat(engine.routes().stream().filter(s.route::equals).count())
            .as(row + " " + s + " sent at most once").isLessThanOrEqualTo(1);
      }
      // a start goes again only after a re-init, when a restarted engine says it is not initialized
      assertThat(engine.routes().stream().filter(Step.START.route::equals).count())
          .as(row + " starts").isLessThanOrEqualTo(prior == Prior.MAYBE_MIXED ? 2 : 1);
      if (want.state().equals("MAYBE_MIXED")) {
        assertThat(engine.routes()).as(row + " never resumed").doesNotContain(Step.RESUME.route);
      }
      assertThat(engine.updateInProgress()).as(row + " vLLM's update in progress")
          .isEqualTo(leftInProgress(step, fault, prior));

      EngineResult next = adapter.update(delivery(staging, "v4"));
      if (leftInProgress(step, fault, prior)) {
        assertThat(next.outcome()).as(row + " then " + next.message())
            .isEqualTo(EngineOutcome.FAILED_PAUSED);
        assertThat(next.failedStep()).isEqualTo("start");
        assertThat(next.message()).contains("409").contains("until it is restarted");
        assertThat(engine.paused()).isTrue();
        engine.restart();
        next = adapter.update(delivery(staging, "v5")); // re-initializes, then loads
      }
      assertThat(next.outcome()).as(row + " then " + next.message()).isEqualTo(EngineOutcome.LOADED);
      assertThat(engine.paused()).isFalse();
      assertThat(adapter.state().state()).isEqualTo("SERVING");
      assertThat(engine.violations()).isZero();
      assertThat(engine.mixed()).isFalse();
    }
  }

  /** An adapter whose engine is in {@code prior}, having served v1 (and failed v2 if mixed). */
  private LeasedEngineAdapter prepare(StandInEngine engine, Path staging, Prior prior)
      throws Exception {
    LeasedEngineAdapter a = adapter(engine, staging);
    assertThat(a.update(delivery(staging, "v1")).outcome()).isEqualTo(EngineOutcome.LOADED);
    switch (prior) {
      case SERVING -> { }
      case PAUSED_CLEAN -> { // a sidecar that paused it, and was restarted before resuming it
        new SessionLedger(staging).record(a.name(), EngineWeights.pausedClean("v1", "paused"));
        java.net.http.HttpClient.newHttpClient().send(java.net.http.HttpRequest.newBuilder(
            java.net.URI.create(engine.url() + "/pause"))
            .POST(java.net.http.HttpRequest.BodyPublishers.noBody()).build(),
            java.net.http.HttpResponse.BodyHandlers.discarding());
        a = adapter(engine, staging);
        assertThat(a.state().state()).isEqualTo("PAUSED_CLEAN");
      }
      case MAYBE_MIXED -> { // a load that failed inside vLLM; vLLM restarted since, and paused
        engine.faults(f -> f.loadFailures = 1);
        assertThat(a.update(delivery(staging, "v2")).outcome()).isEqualTo(EngineOutcome.FAILED_PAUSED);
        assertThat(a.state().state()).isEqualTo("MAYBE_MIXED");
        engine.restart();
        java.net.http.HttpClient.newHttpClient().send(java.net.http.HttpRequest.newBuilder(
            java.net.URI.create(engine.url() + "/pause"))
            .POST(java.net.http.HttpRequest.BodyPublishers.noBody()).build(),
            java.net.http.HttpResponse.BodyHandlers.discarding());
      }
    }
    return a;
  }

  private static LeasedEngineAdapter adapter(StandInEngine engine, Path staging)
      throws java.io.IOException {
    return LeasedEngineAdapter.vllm(engine.url(), "abort", new LeasedEngineAdapter.Settings(null,
        TIMEOUT, 1, Duration.ofMillis(1), false, new SessionLedger(staging), EnginePaths.same()));
  }
}
