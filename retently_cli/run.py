"""One ``retently send`` run: read, decide, plan, deliver (or dry-run), report.

The main thread reads, decides and plans; surveys are grouped into batches and handed to the
dispatcher's worker threads; their outcomes come back here and only this thread writes the
report and the dead letters, so records never interleave.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from retently_cli.config import DELIVERY_DEFAULTS
from retently_cli.deadletters import FIELD as DEAD_LETTER_FIELD
from retently_cli.deadletters import DeadLetters
from retently_cli.delivery import IN_FLIGHT, NOT_SENT, Batcher, Dispatcher, Outcome, Survey
from retently_cli.fanout import FanOut, Settled
from retently_cli.matching import DUPLICATE, RETENTLY_RECORD, Matcher
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
) -> Plan:
    """The first pass of a live send: the dry-run's reading, matching, planning and batching,
    counted but written nowhere (``report`` has no stream and no table), so it costs a
    dry-run's time and no more memory. ``planner`` must be a fresh one: it counts --limit."""
    job = SendJob(matcher, report, None, batch_size, planner, fanout=fanout)
    job.read(sources)
    counts = report.counts
    return Plan(
        dict(counts.surveys_per_campaign),
        job.requests,
        counts.reasons[(SKIPPED, ALREADY_SENT)],
        counts.reasons[(UNCERTAIN_OUTCOME, EARLIER_RUN)],
        job.stats.lines,
    )


class SendJob:
    def __init__(
        self,
        matcher: Matcher,
        report: Report,
        dispatcher: Dispatcher | None = None,
        batch_size: int = DELIVERY_DEFAULTS.batch_size,
        planner: Planner | None = None,
        dead_letters: DeadLetters | None = None,
        on_progress: Callable[[], None] | None = None,
        fanout: FanOut | None = None,
    ):
        self.matcher = matcher
        self.report = report
        self.dispatcher = dispatcher
        self.planner = planner or Planner()
        self.dead_letters = dead_letters
        self.batcher = Batcher(batch_size)
        self.stats = ReadStats()
        self.on_progress = on_progress or (lambda: None)
        # Worker processes that read local files and settle the events skipped at first
        # sight; only where nothing is sent (a dry-run, a plan).
        self.fanout = fanout if dispatcher is None else None
        self._lines_when_idle = -1
        self._idle_since = 0.0
        self._unreported: dict[int, Survey] = {}  # handed to the dispatcher, no outcome yet
        self.read_complete = False
        self.halted_by: str | None = None
        self._own_record_sources: set[str] = set()
        # Inputs that an output replaces at the end (--failed F F): their events that this
        # run neither settled nor wrote back out (filtered, dry-run, malformed) are counted,
        # and while any is, the old file must stay.
        self.replaced_path: str | None = None
        self.kept_back = 0

    @property
    def requests(self) -> int:
        """The requests the surveys read so far take (before any split of a refused batch)."""
        return self.batcher.begun

    def halt(self, why: str) -> None:
        """Stop reading at the next event (an output can no longer be written): what was
        read is still delivered or accounted for by ``stop``."""
        if self.halted_by is None:
            self.halted_by = why

    @property
    def stopped(self) -> bool:
        return self.halted_by is not None or (
            self.dispatcher is not None and self.dispatcher.sender.stop.is_set()
        )

    fast_path = True  # events skipped at first sight through Matcher.skipped; off in tests

    def read(self, sources: Iterable[Source], on_source: Callable[[Source], None] = lambda s: None):
        report, decide, check = self.report, self.matcher.decide, self.planner.check
        skipped = self.matcher.skipped if self.fast_path else lambda item: None
        for source, entries in self._sources(sources):
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
                    elif self.dispatcher is None:  # batched all the same, to name the request
                        survey = Survey(name, line, decision)
                        self.batcher.add(survey)
                        report.dry_run(name, line, decision, survey.batch)
                        self.kept_back += watched
                    else:
                        key, when = self.planner.identity(item)
                        survey = Survey(name, line, decision, item, key, when)
                        self._submit(self.batcher.add(survey))
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
        for item in items:
            yield item
            if self.stopped:
                return

    def finish(self) -> None:
        """Send what is still batched and wait for every outcome."""
        if self.dispatcher is None:
            return
        self._submit(self.batcher.seal_all())
        while self.dispatcher.in_flight:
            outcome = self.dispatcher.wait_for_outcome(0.1)
            if outcome is not None:
                self._record(outcome)
            self.on_progress()
        self.dispatcher.finish()
        self._collect()

    def stop(self, grace: float) -> bool:
        """After an interrupt: send nothing new, give requests in flight ``grace`` seconds, and
        account for every survey read. True when nothing was left unanswered."""
        if self.dispatcher is None:
            return True
        self.dispatcher.sender.stop.set()
        for batch in self.batcher.seal_all():
            for survey in batch.surveys:
                self._record(Outcome.not_sent(survey))
        deadline = time.monotonic() + grace
        while self.dispatcher.in_flight and time.monotonic() < deadline:
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

    def _own_records_in(self, source: str) -> None:
        if source not in self._own_record_sources:
            self._own_record_sources.add(source)
            self.report.warn(
                f"{source}: holds records written by retently (a report or dry-run output), "
                "not events: none of them is surveyed"
            )

    def _submit(self, batches) -> None:
        assert self.dispatcher is not None  # only a live send submits
        batches = list(batches)
        for index, batch in enumerate(batches):
            for survey in batch.surveys:
                self._unreported[id(survey)] = survey
            try:
                self.dispatcher.submit(batch)
            except BaseException:  # interrupted: the batches after this one never left
                for rest in batches[index + 1 :]:
                    for survey in rest.surveys:
                        self._record(Outcome.not_sent(survey))
                raise
        self._collect()

    def _collect(self) -> None:
        if self.dispatcher is not None:
            for outcome in self.dispatcher.outcomes():
                self._record(outcome)
        self.on_progress()

    def _record(self, outcome: Outcome) -> None:
        survey = outcome.survey
        if survey.reported:  # abandoned at a stop, then answered after all
            return
        survey.reported = True
        self._unreported.pop(id(survey), None)
        self.report.delivered(outcome)
        if outcome.reason == NOT_SENT:  # never attempted: the re-run sends it, no dead letter
            if self.replaced_path is not None and same_file(survey.source, self.replaced_path):
                self.kept_back += 1
            return
        if not outcome.sent and self.dead_letters is not None and survey.message is not None:
            campaign = survey.decision.campaign
            # Surveys have a campaign, and one not sent says why.
            assert campaign is not None and outcome.reason is not None
            self.dead_letters.write(
                survey.message, campaign.id, outcome.reason, outcome.status, outcome.attempts
            )

    def _idle(self) -> None:
        """The input has nothing ready. Called again while the wait lasts: once nothing has
        come for ``LINGER`` seconds (a quiet pipe), partial batches are sent, not held."""
        self.report.flush()
        if self.dispatcher is None:
            return
        now = time.monotonic()
        if self.stats.lines != self._lines_when_idle:
            self._lines_when_idle, self._idle_since = self.stats.lines, now
        elif now - self._idle_since >= LINGER:
            self._submit(self.batcher.seal_all())
        else:
            self._collect()
