package dev.weightsync.server.pipeline;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.weightsync.core.checkpoint.FolderPermissions;
import dev.weightsync.core.quant.Format;
import dev.weightsync.core.quant.QuantError;
import dev.weightsync.core.quant.QuantScheme;
import dev.weightsync.server.engine.Delivery;
import dev.weightsync.server.engine.EngineAdapter;
import dev.weightsync.server.engine.EngineOutcome;
import dev.weightsync.server.engine.EngineResult;
import dev.weightsync.server.engine.EngineSet;
import dev.weightsync.server.engine.EngineState;
import dev.weightsync.server.stage.StagingArea;
import io.grpc.Status;
import io.grpc.StatusException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Open, fail, commit and timeout interleavings, on a clock the test moves. */
class VersionCoordinatorTest {

  private static final Duration TIMEOUT = Duration.ofSeconds(10);

  @TempDir
  Path root;

  private final FakeClock clock = new FakeClock();
  private final RecordedEvents events = new RecordedEvents();
  private final List<FakeEngine> engines = new ArrayList<>();
  private VersionCoordinator coordinator;

  @AfterEach
  void close() {
    if (coordinator != null) {
      coordinator.close(Duration.ofSeconds(10));
    }
  }

  private VersionCoordinator coordinator(DeliveryPolicy policy, boolean partByPart,
      FakeEngine... es) throws Exception {
    engines.addAll(List.of(es));
    StagingArea staging = new StagingArea(root, 2, FolderPermissions.DEFAULT, false);
    VersionDelivery delivery = new VersionDelivery(staging, QuantScheme.of(Format.FP8_BLOCK, null),
        new ObjectMapper().createObjectNode(), EngineSet.of(List.of(es)), policy, clock);
    coordinator = new VersionCoordinator(staging, delivery, TIMEOUT, partByPart, clock);
    coordinator.events(events);
    return coordinator;
  }

  private VersionCoordinator coordinator(FakeEngine... es) throws Exception {
    return coordinator(DeliveryPolicy.ALL, false, es);
  }

  @Test
  void aVersionIsDeliveredOnceEveryPartCommittedInAnyOrder() throws Exception {
    FakeEngine engine = new FakeEngine("e1");
    VersionCoordinator c = coordinator(engine);
    VersionCoordinator.Part p0 = c.open("7", 0, 2);
    VersionCoordinator.Part p1 = c.open("7", 1, 2);
    assertThat(p0.directory()).isEqualTo(p1.directory());
    Path temporary = p0.directory();
    clock.advance(Duration.ofSeconds(3));
    Outcome o1 = commit(p1);
    assertThat(c.progress()).singleElement().satisfies(p -> {
      assertThat(p.committed()).containsExactly(1);
      assertThat(p.receiving()).containsExactly(0);
    });
    clock.advance(Duration.ofSeconds(2));
    Outcome o0 = commit(p0);

    VersionOutcome done = o0.completed();
    assertThat(o1.completed()).isSameAs(done);
    assertThat(done.receiveSeconds()).isEqualTo(5.0);
    assertThat(engine.deliveries).singleElement().satisfies(d -> {
      assertThat(d.version()).isEqualTo("7");
      assertThat(d.folder()).isEqualTo(root.resolve("7"));
      assertThat(d.partCount()).isEqualTo(1);
    });
    assertThat(engine.sawConfig).containsExactly(true);
    assertThat(temporary).doesNotExist();
    assertThat(c.lastLoaded()).isEqualTo("7");
    assertThat(events.delivered).hasSize(1);
    awaitIdle(c);
  }

  @Test
  void theTimeoutCountsFromTheFirstHeaderAndWaitsForTheWriterBeforeDeleting() throws Exception {
    FakeEngine engine = new FakeEngine("e1");
    VersionCoordinator c = coordinator(engine);
    VersionCoordinator.Part p0 = c.open("v", 0, 2);
    Outcome o0 = commit(p0);
    clock.advance(Duration.ofSeconds(9));
    VersionCoordinator.Part p1 = c.open("v", 1, 2); // late: the deadline stays where it was
    Path folder = p1.directory();
    clock.advance(Duration.ofSeconds(1));

    Status s = o0.failed();
    assertThat(s.getCode()).isEqualTo(Status.Code.DEADLINE_EXCEEDED);
    assertThat(s.getDescription()).contains("part(s) [1] of 2 did not arrive within 10 s");
    assertThat(p1.abortedWith()).isSameAs(s);
    assertThat(events.failed).containsExactly("deadline_exceeded 10.0");
    assertThat(folder).as("part 1 still writes into it").isDirectory();
    assertThat(c.inFlight()).isZero();

    p1.fail(Set.of(), 0);
    assertThat(folder).doesNotExist();
    assertThat(engine.deliveries).isEmpty();
  }

  @Test
  void aPartCommittingAfterTheTimeoutIsToldTheVersionAborted() throws Exception {
    VersionCoordinator c = coordinator(new FakeEngine("e1"));
    VersionCoordinator.Part p0 = c.open("v", 0, 1);
    Path folder = p0.directory();
    clock.advance(TIMEOUT);
    assertThat(folder).isDirectory();
    Outcome late = commit(p0);
    assertThat(late.failed().getCode()).isEqualTo(Status.Code.DEADLINE_EXCEEDED);
    assertThat(folder).doesNotExist();
    assertThat(engines.get(0).deliveries).isEmpty();
  }

  @Test
  void aFailedPartIsRetriedWithinTheSameDeadline() throws Exception {
    FakeEngine engine = new FakeEngine("e1");
    VersionCoordinator c = coordinator(engine);
    VersionCoordinator.Part p0 = c.open("v", 0, 2);
    Outcome o0 = commit(p0);
    VersionCoordinator.Part p1 = c.open("v", 1, 2);
    assertThat(p1.claimTensor("w")).isTrue();
    assertThat(p1.reserveBytes(100, 150)).isTrue();
    p1.fail(Set.of("w"), 100);
    assertThat(p0.directory()).as("part 0 is kept").isDirectory();

    clock.advance(Duration.ofSeconds(5));
    VersionCoordinator.Part retry = c.open("v", 1, 2);
    assertThat(retry.claimTensor("w")).as("the failed part's names are free again").isTrue();
    assertThat(retry.reserveBytes(100, 150)).as("and its bytes").isTrue();
    clock.advance(Duration.ofSeconds(5));
    assertThat(o0.failed().getDescription()).contains("part(s) [1] of 2");
  }

  @Test
  void aVersionLeftWithNoPartIsDroppedAtOnceAndItsTimeoutNeverFires() throws Exception {
    VersionCoordinator c = coordinator(new FakeEngine("e1"));
    VersionCoordinator.Part first = c.open("v", 0, 1);
    Path firstFolder = first.directory();
    first.fail(Set.of(), 0);
    assertThat(firstFolder).doesNotExist();
    assertThat(c.inFlight()).isZero();

    clock.advance(Duration.ofSeconds(5));
    VersionCoordinator.Part second = c.open("v", 0, 1);
    assertThat(second.directory()).isNotEqualTo(firstFolder);
    clock.advance(Duration.ofSeconds(7)); // past the first attempt's deadline
    assertThat(second.abortedWith()).isNull();
    clock.runLate(); // even a timeout already taken by the timer when it was cancelled
    assertThat(second.abortedWith()).as("the second attempt's own timeout ran too").isNotNull();
    assertThat(events.failed).hasSize(1);
  }

  @Test
  void aTimeoutThatArrivesAfterTheLastCommitChangesNothing() throws Exception {
    FakeEngine engine = new FakeEngine("e1");
    VersionCoordinator c = coordinator(engine);
    VersionCoordinator.Part p0 = c.open("v", 0, 1);
    clock.advance(Duration.ofMillis(9_999));
    Outcome o = commit(p0);
    clock.runLate();
    assertThat(o.completed().version()).isEqualTo("v");
    assertThat(events.failed).isEmpty();
    assertThat(engine.deliveries).hasSize(1);
  }

  @Test
  void conflictingHeadersAreRefusedWithWhatConflicts() throws Exception {
    VersionCoordinator c = coordinator(new FakeEngine("e1"));
    VersionCoordinator.Part p0 = c.open("v", 0, 2);
    assertThatThrownBy(() -> c.open("v", 1, 3)).isInstanceOfSatisfying(StatusException.class,
        e -> assertThat(e.getStatus().getDescription())
            .isEqualTo("version v has 2 parts, but this header says 3"));
    assertThatThrownBy(() -> c.open("v", 0, 2)).isInstanceOfSatisfying(StatusException.class,
        e -> assertThat(e.getStatus().getDescription()).contains("being received on another"));
    commit(p0);
    assertThatThrownBy(() -> c.open("v", 0, 2)).isInstanceOfSatisfying(StatusException.class,
        e -> assertThat(e.getStatus().getDescription()).contains("was already committed"));
    VersionCoordinator.Part p1 = c.open("v", 1, 2);
    assertThat(p1.claimTensor("a")).isTrue();
    assertThat(p1.claimTensor("a")).isFalse();
    assertThat(p1.reserveBytes(10, 15)).isTrue();
    assertThat(p1.reserveBytes(10, 15)).as("past the version's limit").isFalse();
  }

  @Test
  void thePolicyDecidesAndEnginesThatFailedAreOutOfDateUntilTheyLoad() throws Exception {
    FakeEngine good = new FakeEngine("good");
    FakeEngine bad = new FakeEngine("bad");
    bad.outcome = EngineOutcome.FAILED_PAUSED;
    VersionCoordinator c = coordinator(DeliveryPolicy.ALL, false, good, bad);
    Outcome o = commit(c.open("1", 0, 1));
    VersionOutcome failed = o.enginesFailed();
    assertThat(failed.engines()).extracting(EngineResult::outcome)
        .containsExactlyInAnyOrder(EngineOutcome.LOADED, EngineOutcome.FAILED_PAUSED);
    assertThat(o.status.getDescription()).contains("1 of 2 engine(s) failed (policy all needs 2)")
        .contains("bad FAILED_PAUSED");
    assertThat(c.outOfDate("bad")).isEqualTo("1");
    assertThat(c.outOfDate("good")).isNull();
    assertThat(c.lastLoaded()).isEmpty();
    assertThat(events.outOfDate).contains("bad=true", "good=false");

    bad.outcome = EngineOutcome.LOADED;
    assertThat(commit(c.open("2", 0, 1)).completed().version()).isEqualTo("2");
    assertThat(c.outOfDate("bad")).isNull();
    assertThat(c.lastLoaded()).isEqualTo("2");
  }

  @Test
  void aQuorumLoadsWithOneEngineBehind() throws Exception {
    FakeEngine bad = new FakeEngine("bad");
    bad.outcome = EngineOutcome.FAILED_UNTOUCHED;
    VersionCoordinator c = coordinator(DeliveryPolicy.quorum(0.5), false,
        new FakeEngine("a"), bad);
    assertThat(commit(c.open("1", 0, 1)).completed().engines()).hasSize(2);
    assertThat(c.outOfDate("bad")).isEqualTo("1");
  }

  @Test
  void partByPartDeliversEachPartAloneUnderItsOwnName() throws Exception {
    FakeEngine relay = new FakeEngine("relay");
    VersionCoordinator c = coordinator(DeliveryPolicy.ALL, true, relay);
    VersionCoordinator.Part p1 = c.open("9", 1, 3);
    assertThat(commit(p1).completed().version()).isEqualTo("9");
    assertThat(relay.deliveries).singleElement().satisfies(d -> {
      assertThat(d.folder()).isEqualTo(root.resolve("9.part-1"));
      assertThat(d.partIndex()).isEqualTo(1);
      assertThat(d.partCount()).isEqualTo(3);
    });
  }

  @Test
  void aPartSplitIntoSubPartsCommitsOnlyOnceEverySubPartHas() throws Exception {
    FakeEngine engine = new FakeEngine("e1");
    VersionCoordinator c = coordinator(engine);
    VersionCoordinator.Part a0 = c.open("s", 0, 2, 0, 2);
    VersionCoordinator.Part a1 = c.open("s", 0, 2, 1, 2);
    VersionCoordinator.Part b = c.open("s", 1, 2);
    assertThat(a1.sub()).isEqualTo(1);
    assertThat(a1.subCount()).isEqualTo(2);
    Outcome o0 = commit(a0);
    Outcome ob = commit(b);
    assertThat(c.progress()).singleElement().satisfies(p -> {
      assertThat(p.committed()).as("part 0 waits for its second sub-part").containsExactly(1);
      assertThat(p.receiving()).containsExactly(0);
    });
    assertThat(engine.deliveries).isEmpty();
    Outcome o1 = commit(a1);
    VersionOutcome done = o1.completed();
    assertThat(o0.completed()).isSameAs(done);
    assertThat(ob.completed()).isSameAs(done);
    assertThat(engine.deliveries).hasSize(1);
    awaitIdle(c);
  }

  @Test
  void subPartsOfOnePartMustAgreeAndAFailedOneIsRetriedAlone() throws Exception {
    FakeEngine engine = new FakeEngine("e1");
    VersionCoordinator c = coordinator(engine);
    VersionCoordinator.Part s0 = c.open("v", 0, 1, 0, 3);
    assertThatThrownBy(() -> c.open("v", 0, 1, 1, 2)).isInstanceOfSatisfying(
        StatusException.class, e -> {
          assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.ABORTED);
          assertThat(e.getStatus().getDescription())
              .isEqualTo("part 0 of version v is sent as 3 sub-parts, but this header says 2");
        });
    assertThatThrownBy(() -> c.open("v", 0, 1, 0, 3)).isInstanceOfSatisfying(
        StatusException.class, e -> assertThat(e.getStatus().getDescription())
            .isEqualTo("sub-part 0 of part 0 of version v is being received on another stream"));
    VersionCoordinator.Part s1 = c.open("v", 0, 1, 1, 3);
    VersionCoordinator.Part s2 = c.open("v", 0, 1, 2, 3);
    Outcome o0 = commit(s0);
    s1.fail(Set.of(), 0);
    assertThat(s0.directory()).as("the committed sub-part's files are kept").isDirectory();
    VersionCoordinator.Part retry = c.open("v", 0, 1, 1, 3);
    commit(s2);
    assertThat(engine.deliveries).isEmpty();
    commit(retry);
    assertThat(o0.completed().version()).isEqualTo("v");
    awaitIdle(c);
  }

  @Test
  void aPartWhoseEveryStreamFailedMayComeBackSplitAnotherWay() throws Exception {
    VersionCoordinator c = coordinator(new FakeEngine("e1"));
    VersionCoordinator.Part other = c.open("v", 1, 2);
    VersionCoordinator.Part s0 = c.open("v", 0, 2, 0, 4);
    s0.fail(Set.of(), 0);
    VersionCoordinator.Part whole = c.open("v", 0, 2);
    Outcome o = commit(whole);
    commit(other);
    assertThat(o.completed().version()).isEqualTo("v");
    awaitIdle(c);
  }

  @Test
  void aTimeoutNamesThePartsWithSubPartsMissing() throws Exception {
    VersionCoordinator c = coordinator(new FakeEngine("e1"));
    Outcome o = commit(c.open("v", 0, 2, 0, 2));
    commit(c.open("v", 1, 2));
    clock.advance(TIMEOUT);
    assertThat(o.failed().getDescription()).contains("part(s) [0] of 2 did not arrive");
  }

  @Test
  void partByPartRelaysThePartsOfAVersionAtOnce() throws Exception {
    // A relay's answer comes only once every part of the version reached the engine side: parts
    // delivered one after the other would wait on each other until the part timeout.
    FakeEngine relay = new FakeEngine("relay");
    relay.waitFor = new CountDownLatch(3);
    VersionCoordinator c = coordinator(DeliveryPolicy.ALL, true, relay);
    List<Outcome> outcomes = new ArrayList<>();
    for (int p = 0; p < 3; p++) {
      outcomes.add(commit(c.open("v", p, 3)));
    }
    for (Outcome o : outcomes) {
      assertThat(o.completed().engines()).singleElement()
          .satisfies(r -> assertThat(r.outcome()).isEqualTo(EngineOutcome.LOADED));
    }
    assertThat(relay.deliveries).hasSize(3);
    awaitIdle(c);
  }

  @Test
  void anAdapterThatThrowsIsReportedAsAnEngineLeftAsRecorded() throws Exception {
    FakeEngine broken = new FakeEngine("broken");
    broken.thrown = new IllegalStateException("bug");
    VersionCoordinator c = coordinator(broken);
    Outcome o = commit(c.open("1", 0, 1));
    assertThat(o.enginesFailed().engines()).singleElement().satisfies(r -> {
      assertThat(r.failedStep()).isEqualTo("internal");
      assertThat(r.message()).contains("bug").contains("left as recorded: SERVING");
    });
  }

  private static void awaitIdle(VersionCoordinator c) throws InterruptedException {
    long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
    while (c.inFlight() > 0 && System.nanoTime() < end) {
      Thread.sleep(5);
    }
    assertThat(c.inFlight()).isZero();
  }

  private static Outcome commit(VersionCoordinator.Part p) {
    Outcome o = new Outcome();
    p.commit(new PartResult(p.index(), List.of(), List.of(), 10, 5, QuantError.NONE, 0, false,
        null), o);
    return o;
  }

  /** How a version ended for one part's caller. */
  private static final class Outcome implements VersionListener {
    final CompletableFuture<Object> ended = new CompletableFuture<>();
    volatile Status status;

    @Override
    public void completed(VersionOutcome outcome) {
      ended.complete(outcome);
    }

    @Override
    public void failed(Status s) {
      status = s;
      ended.complete(s);
    }

    @Override
    public void enginesFailed(VersionOutcome outcome, Status s) {
      status = s;
      ended.complete(new Object[] {outcome});
    }

    Object get() throws Exception {
      return ended.get(10, TimeUnit.SECONDS);
    }

    VersionOutcome completed() throws Exception {
      Object o = get();
      assertThat(o).as("completed, not " + o).isInstanceOf(VersionOutcome.class);
      return (VersionOutcome) o;
    }

    Status failed() throws Exception {
      Object o = get();
      assertThat(o).as("failed, not " + o).isInstanceOf(Status.class);
      return (Status) o;
    }

    VersionOutcome enginesFailed() throws Exception {
      Object o = get();
      assertThat(o).as("engines failed, not " + o).isInstanceOf(Object[].class);
      return (VersionOutcome) ((Object[]) o)[0];
    }
  }

  private static final class FakeEngine implements EngineAdapter {
    final String name;
    final List<Delivery> deliveries = new CopyOnWriteArrayList<>();
    final List<Boolean> sawConfig = new CopyOnWriteArrayList<>();
    volatile EngineOutcome outcome = EngineOutcome.LOADED;
    volatile RuntimeException thrown;
    /** When set, each update waits for it (a relay waits for every part of its version). */
    volatile CountDownLatch waitFor;

    FakeEngine(String name) {
      this.name = name;
    }

    @Override
    public String name() {
      return name;
    }

    @Override
    public EngineResult update(Delivery d) {
      deliveries.add(d);
      sawConfig.add(Files.isRegularFile(d.folder().resolve("config.json")));
      if (thrown != null) {
        throw thrown;
      }
      CountDownLatch gate = waitFor;
      if (gate != null) {
        gate.countDown();
        try {
          if (!gate.await(10, TimeUnit.SECONDS)) {
            return new EngineResult(name, EngineOutcome.FAILED_UNTOUCHED, "", "not all parts came",
                10, "relay");
          }
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
        }
      }
      return new EngineResult(name, outcome, outcome == EngineOutcome.LOADED ? d.version() : "",
          outcome == EngineOutcome.LOADED ? "" : "injected", 0.1,
          outcome == EngineOutcome.LOADED ? "" : "load");
    }

    @Override
    public EngineState state() {
      return new EngineState(name, EngineState.SERVING, "", "");
    }

    @Override
    public boolean healthy() {
      return true;
    }
  }

  private static final class RecordedEvents implements VersionEvents {
    final List<VersionOutcome> delivered = new CopyOnWriteArrayList<>();
    final List<String> outOfDate = new CopyOnWriteArrayList<>();
    final List<String> failed = new CopyOnWriteArrayList<>();

    @Override
    public void versionDelivered(VersionOutcome o) {
      delivered.add(o);
    }

    @Override
    public void engineOutOfDate(String engine, boolean behind) {
      outOfDate.add(engine + "=" + behind);
    }

    @Override
    public void updateFailed(String outcome, double seconds) {
      failed.add(outcome + " " + seconds);
    }
  }
}
