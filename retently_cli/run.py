"""One ``retently send`` run: read, decide, deliver (or dry-run), report.

The main thread reads and decides; surveys are grouped into batches and handed to the
dispatcher's worker threads; their outcomes come back here and only this thread writes the
report, so records never interleave.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from retently_cli.delivery import Batcher, Dispatcher, Survey
from retently_cli.matching import Matcher
from retently_cli.readers import BadInput, ReadStats, Source, read_source
from retently_cli.report import SKIPPED, Report

LINGER = 0.5


class SendJob:
    def __init__(
        self,
        matcher: Matcher,
        report: Report,
        dispatcher: Dispatcher | None = None,
        batch_size: int = 100,
        on_progress: Callable[[], None] | None = None,
    ):
        self.matcher = matcher
        self.report = report
        self.dispatcher = dispatcher
        self.batcher = Batcher(batch_size)
        self.stats = ReadStats()
        self._on_progress = on_progress or (lambda: None)
        self._lines_when_idle = -1
        self._idle_since = 0.0

    @property
    def stopped(self) -> bool:
        return self.dispatcher is not None and self.dispatcher.sender.stop.is_set()

    def read(self, sources: list[Source], on_source: Callable[[Source], None] = lambda s: None):
        report, decide = self.report, self.matcher.decide
        for source in sources:
            on_source(source)
            name = source.name
            for line, item in read_source(source, self.stats, self._idle):
                if type(item) is BadInput:
                    report.bad_input(name, line, item)
                    continue
                for decision in decide(item):
                    if decision.reason is not None:
                        report.decision(name, line, decision, SKIPPED)
                    elif self.dispatcher is None:
                        report.dry_run(name, line, decision)
                    else:
                        self._submit(self.batcher.add(Survey(name, line, decision)))
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
                self.report.delivered(outcome)
            self._on_progress()
        self.dispatcher.finish()
        self._collect()

    def _submit(self, batches) -> None:
        for batch in batches:
            self.dispatcher.submit(batch)
        self._collect()

    def _collect(self) -> None:
        if self.dispatcher is not None:
            for outcome in self.dispatcher.outcomes():
                self.report.delivered(outcome)
        self._on_progress()

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
