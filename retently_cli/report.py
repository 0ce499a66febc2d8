"""The per-event report: NDJSON records on stdout or in a file, rows for the table, counts.

``Report`` receives every decision, counts it, writes its record where it belongs and computes
the exit code. It draws nothing: the rows worth reading go, as plain tuples, in chunks to a
``Screen`` (``render.EventScreen`` draws them); on large inputs the rest are only counted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Protocol

import orjson

from retently_cli.client import SURVEY_PATH, survey_body
from retently_cli.fanout import Settled
from retently_cli.matching import (
    DUPLICATE,
    INVALID_EMAIL,
    MISSING_EMAIL,
    Decision,
)
from retently_cli.planning import ALREADY_SENT
from retently_cli.readers import BadInput, ReadStats
from retently_cli.skipped_records import SkippedRecords
from retently_cli.vocabulary import ExitCode, Outcome, Reason

DRY_RUN = Outcome.DRY_RUN
SENT = Outcome.SENT
UNCERTAIN = Outcome.UNCERTAIN
FAILED = Outcome.FAILED
SKIPPED = Outcome.SKIPPED

EXIT_OK = ExitCode.OK
EXIT_PROBLEMS = ExitCode.PROBLEMS
EXIT_USAGE = ExitCode.USAGE
EXIT_UNAUTHORIZED = ExitCode.UNAUTHORIZED
EXIT_UNAVAILABLE = ExitCode.UNAVAILABLE
EXIT_INTERRUPTED = ExitCode.INTERRUPTED

# Skips worth a row: a campaign matched, but the customer is not surveyed for a reason that
# may need a fix. Other skips (not_track, no_campaign, already_sent, filtered, ...) are counted.
_ROW_SKIPS = frozenset({MISSING_EMAIL, INVALID_EMAIL, DUPLICATE, Reason.ONCE_PER_EMAIL})
_TABLE_CHUNK = 50
_NAME_KEPT = 200  # characters: longer names are not remembered, so memory stays small
_NAMES_COUNTED = 1_000  # distinct near-miss names counted one by one; the rest together


@dataclass
class Counts:
    outcomes: Counter
    reasons: Counter
    surveys_per_campaign: Counter
    skips_per_campaign: Counter  # matched, not surveyed (already_sent apart)
    already_per_campaign: Counter  # sent by earlier runs
    near_misses: Counter
    hints: dict
    near_misses_more: int = 0  # events under near-miss names past the first _NAMES_COUNTED

    def near_miss(self, name: str, hint: str) -> None:
        """Counted by name for the first ``_NAMES_COUNTED`` names (short enough to keep); a
        log where every event has another name would otherwise fill memory with them."""
        if name in self.near_misses or (
            len(self.near_misses) < _NAMES_COUNTED and len(name) <= _NAME_KEPT
        ):
            self.near_misses[name] += 1
            self.hints[name] = hint
        else:
            self.near_misses_more += 1


# A table row: source, line, message_id, event, email, campaign, outcome, reason, detail.
Row = tuple[str, int, str | None, str | None, str | None, str | None, str, str | None, str | None]


class Screen(Protocol):
    """Where the table's rows and the warnings about the input are shown."""

    def rows(self, rows: list[Row]) -> None: ...

    def warning(self, text: str) -> None: ...


class Report:
    """``streams`` receive every record as NDJSON (stdout for ``--output ndjson``, the
    ``--report`` file); with ``table``, rows go to ``screen``, as do warnings (a report that is
    quiet needs no screen)."""

    def __init__(
        self,
        screen: Screen | None,
        streams=(),
        table: bool = True,
        all_rows: bool = False,
        quiet: bool = False,
        max_rows: int | None = 1000,
    ):
        self.screen = screen
        self.max_rows = None if all_rows else max_rows
        self.rows_shown = 0
        self.rows_over_max = 0
        self.streams = list(streams)
        self.table = table
        self.all_rows = all_rows
        self.quiet = quiet
        self.counts = Counts(Counter(), Counter(), Counter(), Counter(), Counter(), Counter(), {})
        self.rows_hidden = 0
        self.undelivered = 0  # surveys this run tried or meant to send that did not go out
        self._rows: list[Row] = []
        self._dumps = orjson.dumps
        self._newline = orjson.OPT_APPEND_NEWLINE
        self._skipped_records = SkippedRecords()

    # -- receiving --------------------------------------------------------------------------

    def bad_input(self, source: str, line: int, bad: BadInput) -> None:
        self.counts.outcomes[FAILED] += 1
        self.counts.reasons[(FAILED, bad.reason)] += 1
        if self.streams:
            self._emit(
                {
                    "source": source,
                    "line": line,
                    "message_id": None,
                    "event": None,
                    "campaign": None,
                    "email": None,
                    "email_source": None,
                    "outcome": FAILED,
                    "reason": bad.reason,
                    "detail": bad.message,
                }
            )
        if self.table:
            self._row(source, line, None, None, None, None, FAILED, bad.reason, bad.message)

    def decision(
        self,
        source: str,
        line: int,
        d: Decision,
        outcome: str,
        extra: dict | None = None,
        reason: str | None = None,
        detail: str | None = None,
    ) -> None:
        """One decision's record. ``extra`` adds fields (a request, HTTP status, attempts);
        ``reason`` and ``detail`` say why a delivery failed."""
        counts = self.counts
        counts.outcomes[outcome] += 1
        reason = reason or d.reason
        detail = detail or d.detail
        campaign = d.campaign.id if d.campaign is not None else None
        if reason is not None:
            counts.reasons[(outcome, reason)] += 1
            if campaign is not None:
                if reason == ALREADY_SENT:
                    counts.already_per_campaign[campaign] += 1
                else:
                    counts.skips_per_campaign[campaign] += 1
            elif d.hint is not None and d.event is not None:  # hints are for named events
                counts.near_miss(d.event, d.hint)
        elif outcome in (SENT, DRY_RUN):
            counts.surveys_per_campaign[campaign] += 1
        if self.streams:
            record = {
                "source": source,
                "line": line,
                "message_id": d.message_id,
                "event": d.event,
                "campaign": campaign,
                "email": d.email,
                "email_source": d.email_source,
                "outcome": outcome,
                "reason": reason,
                "detail": detail,
            }
            if extra:
                record.update(extra)
            self._emit(record)
        if not self.table:
            return
        if self.all_rows or outcome != SKIPPED or reason in _ROW_SKIPS:
            if outcome == SENT and extra:  # the table has no status and attempts columns
                tries = f", {extra['attempts']} attempts" if extra["attempts"] > 1 else ""
                result = f", {extra['result']}" if extra.get("result") else ""
                detail = f"HTTP {extra['status']}{result}{tries}"
            self._row(
                source, line, d.message_id, d.event, d.email, campaign, outcome, reason, detail
            )
        else:
            self.rows_hidden += 1

    def skipped(
        self,
        source: str,
        line: int,
        message_id: str | None,
        event: str | None,
        reason: str,
        detail: str | None,
        hint: str | None,
    ) -> None:
        """What ``decision`` does for an event skipped with no campaign (``Matcher.skipped``):
        the same record byte for byte, written from parts remembered per source and per
        (event name, reason, detail)."""
        counts = self.counts
        counts.outcomes[SKIPPED] += 1
        counts.reasons[(SKIPPED, reason)] += 1
        if hint is not None and event is not None:  # hints are for named events
            counts.near_miss(event, hint)
        if self.streams:
            record = self._skipped_records.record(source, line, message_id, event, reason, detail)
            for stream in self.streams:
                stream.write(record)
        if self.table:
            if self.all_rows:
                self._row(source, line, message_id, event, None, None, SKIPPED, reason, detail)
            else:
                self.rows_hidden += 1

    def settled(self, settled: Settled) -> None:
        """What ``skipped`` does for each event of a stretch a worker process skipped."""
        counts = self.counts
        counts.outcomes[SKIPPED] += settled.count
        for reason, events in settled.reasons.items():
            counts.reasons[(SKIPPED, reason)] += events
        for event, hint in settled.near_misses:
            counts.near_miss(event, hint)
        if self.streams:
            for stream in self.streams:
                stream.write(settled.records)
        if self.table:  # a worker settles nothing when every row is shown
            self.rows_hidden += settled.count

    def _emit(self, record: dict) -> None:
        line = self._dumps(record, option=self._newline)
        for stream in self.streams:
            stream.write(line)

    def dry_run(self, source: str, line: int, d: Decision, batch: int = 0) -> None:
        """``batch`` numbers the request the survey would travel in (the same for the surveys
        sharing it); ``body`` is this survey's part of it."""
        if self.streams:
            request = {
                "method": "POST",
                "path": SURVEY_PATH,
                "batch": batch,
                "body": survey_body(d),
            }
            self.decision(source, line, d, DRY_RUN, {"request": request})
        else:
            self.decision(source, line, d, DRY_RUN)

    def delivered(self, outcome) -> None:
        """The record of a delivery attempt's end (a ``delivery.Outcome``)."""
        survey = outcome.survey
        extra = {"status": outcome.status, "attempts": outcome.attempts}
        if outcome.result is not None:
            extra["result"] = outcome.result
        kind = SENT if outcome.sent else UNCERTAIN if outcome.uncertain else FAILED
        self.undelivered += kind == FAILED
        self.decision(
            survey.source,
            survey.line,
            survey.decision,
            kind,
            extra,
            reason=outcome.reason,
            detail=outcome.detail,
        )

    def warn(self, text: str) -> None:
        """A warning about the input, on stderr between table rows, not in the records."""
        if self.quiet or self.screen is None:
            return
        if self._rows:
            self._print_rows()
        self.screen.warning(text)

    # -- writing ----------------------------------------------------------------------------

    def flush(self) -> None:
        """Write out what is buffered; called before the reader may wait for input."""
        if self._rows:
            self._print_rows()
        for stream in self.streams:
            stream.flush()

    def _row(self, source, line, message_id, event, email, campaign, outcome, reason, detail):
        if self.quiet:
            return
        if self.max_rows is not None and self.rows_shown >= self.max_rows:
            self.rows_over_max += 1
            return
        self.rows_shown += 1
        self._rows.append(
            (source, line, message_id, event, email, campaign, outcome, reason, detail)
        )
        if len(self._rows) >= _TABLE_CHUNK:
            self._print_rows()

    def _print_rows(self) -> None:
        rows, self._rows = self._rows, []
        if self.screen is not None:
            self.screen.rows(rows)

    # -- the end ----------------------------------------------------------------------------

    def exit_code(self) -> int:
        troubled = self.counts.outcomes[FAILED] or self.counts.outcomes[UNCERTAIN]
        return EXIT_PROBLEMS if troubled else EXIT_OK

    @property
    def finished_earlier(self) -> bool:
        """A re-run of a finished backfill: earlier runs sent everything, nothing is amiss."""
        c = self.counts
        return (
            bool(c.already_per_campaign)
            and not c.surveys_per_campaign
            and not self.undelivered
            and not c.outcomes[UNCERTAIN]
        )

    def summary_record(self, stats: ReadStats | None) -> dict:
        """The summary's counts as one JSON-able object (for --summary-json)."""
        c = self.counts
        reasons: dict[str, dict[str, int]] = {}
        for (outcome, reason), count in sorted(c.reasons.items()):
            reasons.setdefault(outcome, {})[reason] = count
        return {
            "lines": stats.lines if stats is not None else 0,
            "sources": stats.sources if stats is not None else 0,
            "records": sum(c.outcomes.values()),
            "outcomes": dict(sorted(c.outcomes.items())),
            "reasons": reasons,
            "surveys_per_campaign": dict(sorted(c.surveys_per_campaign.items())),
            "already_sent": sum(c.already_per_campaign.values()),
            "matched_not_surveyed": sum(c.skips_per_campaign.values()),
        }

    @property
    def sent(self) -> int:
        return self.counts.outcomes[SENT]

    @property
    def failed(self) -> int:
        return self.counts.outcomes[FAILED]
