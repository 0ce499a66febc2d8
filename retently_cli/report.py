"""The per-event report: NDJSON records on stdout, or a Rich table on stderr, then a summary.

``Report`` receives every decision, counts it, writes it where it belongs and computes the exit
code. The table is printed in chunks with fixed column widths, so it streams and its rows line
up; on large inputs only the rows worth reading are printed (the rest are counted).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import orjson
from rich.console import Console
from rich.table import Table
from rich.text import Text

from retently_cli.client import SURVEY_PATH, survey_body
from retently_cli.delivery import sending_time
from retently_cli.fanout import Settled
from retently_cli.matching import (
    DUPLICATE,
    INVALID_EMAIL,
    MISSING_EMAIL,
    Decision,
)
from retently_cli.planning import ALREADY_SENT, FILTERED
from retently_cli.readers import BadInput, ReadStats
from retently_cli.skipped_records import SkippedRecords
from retently_cli.visible import visible
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

# Skips that concern an event a campaign did match: worth a row in the table.
# Skips worth a row: a campaign matched, but the customer is not surveyed for a reason that
# may need a fix. Other skips (not_track, no_campaign, already_sent, filtered, ...) are counted.
_ROW_SKIPS = frozenset({MISSING_EMAIL, INVALID_EMAIL, DUPLICATE, Reason.ONCE_PER_EMAIL})
_STYLES = {
    DRY_RUN: "cyan",
    SENT: "green",
    UNCERTAIN: "bold yellow",
    FAILED: "bold red",
    SKIPPED: "dim",
}
_TABLE_CHUNK = 50
_NAME_KEPT = 200  # characters: longer names are not remembered, so memory stays small
_NEAR_MISSES_SHOWN = 20
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


class Report:
    """``streams`` receive every record as NDJSON (stdout for ``--output ndjson``, the
    ``--report`` file); ``table`` prints the Rich table on the console."""

    def __init__(
        self,
        console: Console,
        streams=(),
        table: bool = True,
        all_rows: bool = False,
        quiet: bool = False,
        max_rows: int | None = 1000,
    ):
        self.console = console
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
        self._rows: list[tuple] = []
        self._header_shown = False
        self._widths = _column_widths(console.width)
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
        if self.quiet:
            return
        if self._rows:
            self._print_rows()
        self.console.print(Text(f"warning: {visible(text)}", style="yellow"), soft_wrap=True)

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
        layout = self._widths
        table = Table(
            show_header=not self._header_shown,
            box=None,
            padding=(0, 1, 0, 0),
            header_style="bold",
        )
        for title, width in layout.items():
            table.add_column(title, width=width, no_wrap=True, overflow="ellipsis")
        for source, line, message_id, event, email, campaign, outcome, reason, detail in self._rows:
            why = reason or ""
            if detail:
                why = f"{why}: {detail}" if why else detail
            cells = {
                "source": Text(_tail(visible(f"{source}:{line}"), layout["source"])),
                "messageId": Text(visible(message_id or "")),
                "event": Text(_event_text(event)),
                "email": Text(visible(email or "")),
                "campaign": Text(_tail(visible(campaign or ""), layout.get("campaign", 0))),
                "outcome": Text(outcome, style=_STYLES.get(outcome, "")),
                "reason": Text(visible(why)),
            }
            table.add_row(*(cells[title] for title in layout))
        self._rows.clear()
        self._header_shown = True
        self.console.print(table)

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

    def summary(
        self, stats: ReadStats, interrupted: bool = False, read_complete: bool = False
    ) -> None:
        self.flush()
        if self.quiet:
            return
        c = self.counts
        console = self.console
        total = sum(c.outcomes.values())
        console.print()
        head = Text("Summary", style="bold")
        head.append(
            f": {stats.lines:,} lines read from {stats.sources:,} source"
            f"{'s' if stats.sources != 1 else ''}"
            + (f" ({stats.blank_lines:,} blank)" if stats.blank_lines else "")
            + (f", {stats.pruned_folders:,} day folders pruned" if stats.pruned_folders else "")
            + f", {total:,} record{'s' if total != 1 else ''}"
            + _skipped_files(stats),
            style="",
        )
        if interrupted:
            when = "while sending" if read_complete else "before the input was read to the end"
            head.append(f"  (interrupted {when})", style="bold yellow")
        console.print(head)

        table = Table(box=None, pad_edge=False, header_style="bold")
        table.add_column("outcome")
        table.add_column("reason")
        table.add_column("count", justify="right")
        for outcome in (SENT, DRY_RUN, UNCERTAIN, FAILED, SKIPPED):
            if not c.outcomes[outcome]:
                continue
            reasons = sorted(
                ((r, n) for (o, r), n in c.reasons.items() if o == outcome), key=lambda x: -x[1]
            )
            plain = c.outcomes[outcome] - sum(n for _, n in reasons)
            if plain:
                table.add_row(Text(outcome, style=_STYLES[outcome]), "", f"{plain:,}")
            for reason, count in reasons:
                table.add_row(Text(outcome, style=_STYLES[outcome]), Text(reason), f"{count:,}")
        console.print(table)

        campaigns = sorted(
            set(c.surveys_per_campaign) | set(c.skips_per_campaign) | set(c.already_per_campaign)
        )
        if campaigns:
            per = Table(box=None, pad_edge=False, header_style="bold")
            per.add_column("campaign")
            per.add_column("surveys", justify="right")
            per.add_column("already sent (earlier runs)", justify="right")
            per.add_column("matched, not surveyed", justify="right")
            for campaign in campaigns:
                per.add_row(
                    Text(visible(campaign)),
                    f"{c.surveys_per_campaign[campaign]:,}",
                    f"{c.already_per_campaign[campaign]:,}",
                    f"{c.skips_per_campaign[campaign]:,}",
                )
            console.print(per)
        if self.finished_earlier:
            already = sum(c.already_per_campaign.values())
            # --since/--until/--event/--campaign/--limit may keep matched events of the input out
            held = "selection" if c.reasons[(SKIPPED, FILTERED)] else "input"
            console.print(
                Text(f"Done: the {already:,} surveys this {held} holds were all sent by earlier "
                     "runs; nothing was left to send.", style="green"),
            )  # fmt: skip

        if c.near_misses or c.near_misses_more:
            console.print(Text("Near misses (unmapped names close to a mapped one):", style="bold"))
            shown = c.near_misses.most_common(_NEAR_MISSES_SHOWN)
            for name, count in shown:
                console.print(Text(f"  {name!r} ×{count:,}: did you mean {c.hints[name]!r}?"))
            more = sum(c.near_misses.values()) - sum(n for _, n in shown) + c.near_misses_more
            if more:
                console.print(Text(f"  {more:,} more events under other such names", style="dim"))
        if self.rows_over_max:
            console.print(
                Text(
                    f"{self.rows_over_max:,} more rows not shown after the first "
                    f"{self.max_rows:,} (--report FILE or --output ndjson lists every record, "
                    "--all-rows prints them all)",
                    style="dim",
                )
            )
        if self.rows_hidden:
            console.print(
                Text(
                    f"{self.rows_hidden:,} rows for events not surveyed (unmatched, already sent, "
                    "filtered) not shown (--all-rows shows them)",
                    style="dim",
                )
            )


# The table's columns. Outcome is as wide as its longest value, so "uncertain" is never cut;
# messageId, then campaign, leave a narrow terminal first; source, event, email and reason
# share the rest, event and email up to a cap, so that a wide terminal gives its room to the
# source (a long path) and the reason (Retently's message).
_COLUMNS = ("source", "messageId", "event", "email", "campaign", "outcome", "reason")
_FIXED = {"messageId": 12, "campaign": 10, "outcome": max(map(len, _STYLES))}
_LEAST = {"source": 12, "event": 14, "email": 18, "reason": 14}
_SHARE = {"source": 0.2, "event": 0.2, "email": 0.25, "reason": 0.35}
_CAP = {"event": 24, "email": 30}
_LEFT_OVER = {"source": 0.3, "reason": 0.7}  # what the capped columns do not take


def _column_widths(total: int) -> dict[str, int]:
    """Column title -> width, for a console ``total`` characters wide (each column is
    followed by one space)."""
    for dropped in ((), ("messageId",), ("messageId", "campaign")):
        names = [name for name in _COLUMNS if name not in dropped]
        room = total - len(names) - sum(_FIXED.get(name, 0) for name in names)
        if room >= sum(_LEAST.values()):
            break
    widths = {name: _FIXED.get(name, 0) for name in names}
    widths.update(_flexible_widths(room))
    return widths


def _flexible_widths(room: int) -> dict[str, int]:
    least = sum(_LEAST.values())
    if room < least:  # narrower than any layout: every column shrinks alike
        room = max(room, len(_LEAST) * 4)
        return {name: max(int(width * room / least), 4) for name, width in _LEAST.items()}
    spare = room - least
    widths = {name: _LEAST[name] + int(spare * _SHARE[name]) for name in _LEAST}
    for name, cap in _CAP.items():
        widths[name] = min(widths[name], cap)
    freed = room - sum(widths.values())
    widths["source"] += int(freed * _LEFT_OVER["source"])
    widths["reason"] += freed - int(freed * _LEFT_OVER["source"])
    return widths


def _event_text(event: str | None) -> str:
    """Quoted when edge spaces would hide in the column; control characters always escaped."""
    if event is None:
        return ""
    return repr(event) if event != event.strip() else visible(event)


def _tail(text: str, width: int) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1) :]


def _skipped_files(stats: ReadStats) -> str:
    """The files a folder walk passed over because they do not start like JSON."""
    count = stats.skipped_files
    if not count:
        return ""
    return f", {count:,} file{'s' if count != 1 else ''} skipped (not JSON)"


def requests_line(requests: int, batch_size: int, rate_limit: float) -> str:
    """The requests a run takes and how long at ``rate_limit``: a plan's and a dry-run's."""
    took = about(sending_time(requests, rate_limit))
    return (
        f"{requests:,} request{'s' if requests != 1 else ''} (batch_size {batch_size}), "
        f"{took} at rate_limit {rate_limit:,}/min"
    )


def about(seconds: float) -> str:
    """A duration as a person reads an estimate."""
    if seconds < 60:
        return f"about {max(1, round(seconds))} s"
    if seconds < 3600:
        return f"about {round(seconds / 60)} min"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"about {hours} h {minutes:02d} min"
