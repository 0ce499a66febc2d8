"""One ``retently send`` run: read, decide, plan, deliver (or dry-run), report.

The main thread reads, decides and plans; the surveys go to a ``Delivery``: a dry-run's
batches them only to name each one's request, a live one hands batches to the dispatcher's
worker threads. Outcomes come back here and only this thread writes the report and the dead
letters, so records never interleave.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from retently_cli.config import DELIVERY_DEFAULTS
from retently_cli.deadletters import FIELD as DEAD_LETTER_FIELD
from retently_cli.deadletters import DeadLetters
from retently_cli.delivery import IN_FLIGHT, NOT_SENT, Batch, Batcher, Dispatcher, Outcome, Survey
from retently_cli.fanout import FanOut, Settled
from retently_cli.interrupts import Interrupts
from retently_cli.matching import DUPLICATE, RETENTLY_RECORD, Decision, Matcher
from retently_cli.outputs import same_file
from retently_cli.planning import ALREADY_SENT, EARLIER_RUN, UNCERTAIN_OUTCOME, Planner
from retently_cli.readers import BadInput, ReadStats, Source, read_source
from retently_cli.report import SKIPPED, Report

LINGER = 0.5


@dataclass
class Plan:
    """What a live send from files will do, found before it sends anything."""

    surveys: dict[str, int]  # per campaign
    requests: int
    already_sent: int  # by earlier runs, per the ledger
    uncertain: int  # earlier runs never learned the result: not resent
    lines: int

    @property
    def total(self) -> int:
        return sum(self.surveys.values())


def make_plan(
    matcher: Matcher,
    planner: Planner,
    sources: Iterable[Source],
    batch_size: int,
    report: Report,
    fanout: FanOut | None = None,
    interrupts: Interrupts | None = None,
) -> Plan:
    """The first pass of a live send: the dry-run's reading, matching, planning and batching,
    counted but written nowhere (``report`` has no stream and no table), so it costs a
    dry-run's time and no more memory. ``planner`` must be a fresh one: it counts --limit."""
    records = Records(report)
    delivery = DryRunDelivery(records, batch_size)
    job = SendJob(matcher, records, delivery, planner, fanout=fanout, interrupts=interrupts)
    job.read(sources)
    counts = report.counts
    return Plan(
        dict(counts.surveys_per_campaign),
        job.requests,
        counts.reasons[(SKIPPED, ALREADY_SENT)],
        counts.reasons[(UNCERTAIN_OUTCOME, EARLIER_RUN)],
        job.stats.lines,
    )


class Records:
    """Where the ends of surveys are written: the report and the dead letters.

    ``replaced_path`` is an input that an output replaces at the end (--failed F F): its
    events that this run neither settled nor wrote back out (filtered, dry-run, malformed,
    not sent) are counted in ``kept_back``, and while any is, the old file must stay.
    """

    def __init__(
        self,
        report: Report,
        dead_letters: DeadLetters | None = None,
        replaced_path: str | None = None,
    ):
        self.report = report
        self.dead_letters = dead_letters
        self.replaced_path = replaced_path
        self.kept_back = 0

    def watches(self, source: str) -> bool:
        return self.replaced_path is not None and same_file(source, self.replaced_path)

    def dry_run(self, survey: Survey) -> None:
        self.report.dry_run(survey.source, survey.line, survey.decision, survey.batch)
        self.kept_back += self.watches(survey.source)

    def delivered(self, outcome: Outcome) -> None:
        survey = outcome.survey
        self.report.delivered(outcome)
        if outcome.reason == NOT_SENT:  # never attempted: the re-run sends it, no dead letter
            self.kept_back += self.watches(survey.source)
            return
        if not outcome.sent and self.dead_letters is not None and survey.message is not None:
            campaign = survey.decision.campaign
            # Surveys have a campaign, and one not sent says why.
            assert campaign is not None and outcome.reason is not None
            self.dead_letters.write(
                survey.message, campaign.id, outcome.reason, outcome.status, outcome.attempts
            )


class Delivery(Protocol):
    """Where a run's surveys go once decided: ``DryRunDelivery`` or ``LiveDelivery``."""

    @property
    def requests(self) -> int:
        """The requests the surveys added so far take (before any split of a refused batch)."""
        ...

    @property
    def stopped(self) -> bool:
        """Nothing more is sent (the key was refused, the API or the ledger failed)."""
        ...

    @property
    def unauthorized(self) -> bool: ...

    @property
    def unavailable(self) -> str | None:
        """Why the circuit breaker stopped sending."""
        ...

    @property
    def ledger_error(self) -> Exception | None:
        """Why the ledger could not be written."""
        ...

    def add(self, source: str, line: int, message: dict, decision: Decision) -> None:
        """A decision to survey."""
        ...

    def idle(self, lines: int) -> None:
        """The input has nothing ready, after ``lines`` lines read."""
        ...

    def finish(self) -> None:
        """Send what is still batched and wait for every outcome."""
        ...

    def stop(self, grace: float) -> bool:
        """After an interrupt: send nothing new, give requests in flight ``grace`` seconds, and
        account for every survey added. True when nothing was left unanswered."""
        ...

    def __enter__(self) -> Delivery: ...

    def __exit__(self, *exc) -> None:
        """The run is over: what the delivery holds is let go."""
        ...


class DryRunDelivery:
    """Sends nothing: each survey is batched all the same, so its record names the request
    it would travel in, and ``requests`` counts what a live send would take."""

    stopped = False  # an attribute, not a property: it is asked at every line read
    unauthorized = False
    unavailable: str | None = None
    ledger_error: Exception | None = None

    def __init__(self, records: Records, batch_size: int = DELIVERY_DEFAULTS.batch_size):
        self.records = records
        self.batcher = Batcher(batch_size)

    @property
    def requests(self) -> int:
        return self.batcher.begun

    def add(self, source: str, line: int, message: dict, decision: Decision) -> None:
        survey = Survey(source, line, decision)
        self.batcher.add(survey)
        self.records.dry_run(survey)

    def idle(self, lines: int) -> None:
        return None

    def finish(self) -> None:
        return None

    def stop(self, grace: float) -> bool:
        return True

    def __enter__(self) -> DryRunDelivery:
        return self

    def __exit__(self, *exc) -> None:
        return None


class LiveDelivery:
    """Batches handed to the dispatcher's workers, their outcomes recorded as they come back.

    ``identity`` gives an event's ledger key and time (``Planner.identity``, which has them
    from its checks); ``on_progress`` is called whenever outcomes may have come in.
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        records: Records,
        identity: Callable[[dict], tuple[str, float | None]],
        batch_size: int = DELIVERY_DEFAULTS.batch_size,
        on_progress: Callable[[], None] = lambda: None,
        interrupts: Interrupts | None = None,
    ):
        self.dispatcher = dispatcher
        self.interrupts = interrupts or Interrupts()
        self.records = records
        self.identity = identity
        self.batcher = Batcher(batch_size)
        self.on_progress = on_progress
        self._sender = dispatcher.sender
        self._unreported: dict[int, Survey] = {}  # handed to the dispatcher, no outcome yet
        self._lines_when_idle = -1
        self._idle_since = 0.0

    @property
    def requests(self) -> int:
        return self.batcher.begun

    @property
    def stopped(self) -> bool:
        return self._sender.stop.is_set()

    @property
    def unauthorized(self) -> bool:
        return self._sender.unauthorized

    @property
    def unavailable(self) -> str | None:
        return self._sender.unavailable

    @property
    def ledger_error(self) -> Exception | None:
        return self._sender.ledger_error

    def add(self, source: str, line: int, message: dict, decision: Decision) -> None:
        key, when = self.identity(message)
        self._submit(self.batcher.add(Survey(source, line, decision, message, key, when)))

    def idle(self, lines: int) -> None:
        """Once nothing has come for ``LINGER`` seconds (a quiet pipe), partial batches are
        sent, not held."""
        now = time.monotonic()
        if lines != self._lines_when_idle:
            self._lines_when_idle, self._idle_since = lines, now
        elif now - self._idle_since >= LINGER:
            self._submit(self.batcher.seal_all())
        else:
            self._collect()

    def finish(self) -> None:
        self._submit(self.batcher.seal_all())
        while self.dispatcher.in_flight:
            self.interrupts.check()
            outcome = self.dispatcher.wait_for_outcome(0.1)
            if outcome is not None:
                self._record(outcome)
            self.on_progress()
        self.dispatcher.finish()
        self._collect()

    def stop(self, grace: float) -> bool:
        self._sender.stop.set()
        for batch in self.batcher.seal_all():
            for survey in batch.surveys:
                self._record(Outcome.not_sent(survey))
        deadline = time.monotonic() + grace
        while self.dispatcher.in_flight and time.monotonic() < deadline:
            self.interrupts.check()  # another signal: the caller leaves at once
            outcome = self.dispatcher.wait_for_outcome(0.1)
            if outcome is not None:
                self._record(outcome)
        left = self.dispatcher.abandon()
        for outcome in left:
            self._record(outcome)
        # A batch a worker had just taken, not yet marked as its own, is in neither list.
        stragglers = list(self._unreported.values())
        for survey in stragglers:
            self._record(Outcome.in_flight(survey))
        return not stragglers and not any(outcome.reason == IN_FLIGHT for outcome in left)

    def __enter__(self) -> LiveDelivery:
        return self

    def __exit__(self, *exc) -> None:
        self.dispatcher.close()

    def _submit(self, batches: list[Batch]) -> None:
        for index, batch in enumerate(batches):
            for survey in batch.surveys:
                self._unreported[id(survey)] = survey
            # A signal while it waits for room: not sent, and the event's other surveys are
            # recorded too before the reading stops (at the next event).
            try:
                queued = self.dispatcher.submit(batch, self._interrupted)
            except BaseException:
                self._not_sent(batches[index + 1 :])
                raise
            if not queued:
                self._not_sent(batches[index + 1 :])
                break
        self._collect()

    def _interrupted(self) -> bool:
        return self.interrupts.pending

    def _not_sent(self, batches: list[Batch]) -> None:
        for batch in batches:
            for survey in batch.surveys:
                self._record(Outcome.not_sent(survey))

    def _collect(self) -> None:
        for outcome in self.dispatcher.outcomes():
            self._record(outcome)
        self.on_progress()

    def _record(self, outcome: Outcome) -> None:
        survey = outcome.survey
        if survey.reported:  # abandoned at a stop, then answered after all
            return
        survey.reported = True
        self._unreported.pop(id(survey), None)
        self.records.delivered(outcome)


class SendJob:
    """Reads the sources, decides on each event and hands the surveys to ``delivery``; the
    records of what is not surveyed are written here, the rest by the delivery."""

    def __init__(
        self,
        matcher: Matcher,
        records: Records,
        delivery: Delivery,
        planner: Planner | None = None,
        stats: ReadStats | None = None,
        fanout: FanOut | None = None,
        interrupts: Interrupts | None = None,
    ):
        self.matcher = matcher
        self.records = records
        self.report = records.report
        self.dead_letters = records.dead_letters
        self.replaced_path = records.replaced_path
        self.delivery = delivery
        self.planner = planner or Planner()
        self.stats = stats or ReadStats()
        # Worker processes that read local files and settle the events skipped at first
        # sight; only where nothing is sent (a dry-run, a plan).
        self.fanout = fanout
        # Signals noted while reading; acted on between events and while waiting for input.
        self.interrupts = interrupts or Interrupts()
        self.read_complete = False
        self.halted_by: str | None = None
        self._own_record_sources: set[str] = set()
        self.kept_back = 0  # events of the replaced input not surveyed (see ``Records``)

    @property
    def requests(self) -> int:
        """The requests the surveys read so far take (before any split of a refused batch)."""
        return self.delivery.requests

    @property
    def replaced_input_settled(self) -> bool:
        """The replaced input (``Records``) was read to the end, and each of its events
        settled or written back out: the old file may go."""
        return self.read_complete and not self.kept_back and not self.records.kept_back

    def halt(self, why: str) -> None:
        """Stop reading at the next event (an output can no longer be written): what was
        read is still delivered or accounted for by ``stop``."""
        if self.halted_by is None:
            self.halted_by = why

    @property
    def stopped(self) -> bool:
        return self.halted_by is not None or self.delivery.stopped

    fast_path = True  # events skipped at first sight through Matcher.skipped; off in tests

    def read(self, sources: Iterable[Source], on_source: Callable[[Source], None] = lambda s: None):
        report, decide, check = self.report, self.matcher.decide, self.planner.check
        skipped = self.matcher.skipped if self.fast_path else lambda item: None
        for source, entries in self._sources(sources):
            self.interrupts.check()  # a walk of empty files yields no entry to check after
            on_source(source)
            name = source.name
            watched = self.replaced_path is not None and same_file(name, self.replaced_path)
            for entry in self._until_stopped(entries):
                if type(entry) is Settled:
                    report.settled(entry)
                    self.kept_back += watched and entry.count
                    continue
                line, item = entry
                if type(item) is BadInput:
                    report.bad_input(name, line, item)
                    self.kept_back += watched
                    continue
                item.pop(DEAD_LETTER_FIELD, None)
                fate = skipped(item)
                if fate is not None:
                    report.skipped(name, line, *fate)
                    self.kept_back += watched
                    continue
                for decision in decide(item):
                    if decision.reason is not None:
                        report.decision(name, line, decision, SKIPPED)
                        self.kept_back += watched and decision.reason != DUPLICATE
                        if decision.reason == RETENTLY_RECORD:
                            self._own_records_in(name)
                        continue
                    verdict = check(item, decision)
                    if verdict is not None:
                        report.decision(
                            name, line, decision, verdict.outcome, None, verdict.reason,
                            verdict.detail,
                        )  # fmt: skip
                        if verdict.outcome == UNCERTAIN_OUTCOME and self.dead_letters:
                            assert decision.campaign is not None  # it was surveyable
                            self.dead_letters.write(item, decision.campaign.id, verdict.reason)
                        else:
                            self.kept_back += watched and verdict.reason != ALREADY_SENT
                    else:
                        self.delivery.add(name, line, item, decision)
            if self.stopped:
                return
        self.read_complete = True

    def _sources(self, sources: Iterable[Source]):
        if self.fanout is None:
            return ((s, read_source(s, self.stats, self._idle)) for s in sources)
        return self.fanout.read(sources, self.stats, self._idle)

    def _until_stopped(self, items):
        """``items``, until the run stops: checked before the next line is taken, so that
        each line read has its record (one taken and then dropped would be in no count)."""
        interrupts = self.interrupts
        for item in items:
            yield item
            if interrupts.pending:
                interrupts.check()
            if self.stopped:
                return

    def finish(self) -> None:
        """Send what is still batched and wait for every outcome."""
        self.delivery.finish()

    def stop(self, grace: float) -> bool:
        """After an interrupt: send nothing new, give requests in flight ``grace`` seconds, and
        account for every survey read. True when nothing was left unanswered."""
        return self.delivery.stop(grace)

    def _own_records_in(self, source: str) -> None:
        if source not in self._own_record_sources:
            self._own_record_sources.add(source)
            self.report.warn(
                f"{source}: holds records written by retently (a report or dry-run output), "
                "not events: none of them is surveyed"
            )

    def _idle(self) -> None:
        """The input has nothing ready (called again while the wait lasts)."""
        self.interrupts.check()
        self.report.flush()
        self.delivery.idle(self.stats.lines)
