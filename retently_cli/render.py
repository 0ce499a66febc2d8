"""Every table and summary the commands print, drawn from plain counts and rows.

The counting happens elsewhere (``Report``, ``Differ``, ``Coverage``, the ledger); the
consoles are made in ``cli.options``. Here is only how things look: the per-event table of
``send`` (printed in chunks with fixed column widths, so it streams and its rows line up), its
summary and plan, the previews' tables, the account's and the ledger's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

from retently_cli.delivery import sending_time
from retently_cli.planning import FILTERED
from retently_cli.readers import ReadStats
from retently_cli.visible import visible
from retently_cli.vocabulary import Outcome

if TYPE_CHECKING:
    from retently_cli.config import Config, Delivery
    from retently_cli.diffing import Differ
    from retently_cli.report import Report, Row
    from retently_cli.run import Plan

_STYLES: dict[str, str] = {
    Outcome.DRY_RUN: "cyan",
    Outcome.SENT: "green",
    Outcome.UNCERTAIN: "bold yellow",
    Outcome.FAILED: "bold red",
    Outcome.SKIPPED: "dim",
}
_SUMMARY_ORDER = (Outcome.SENT, Outcome.DRY_RUN, Outcome.UNCERTAIN, Outcome.FAILED, Outcome.SKIPPED)
_NEAR_MISSES_SHOWN = 20


def warning(console: Console, text: str) -> None:
    console.print(Text(f"warning: {visible(text)}", style="yellow"), soft_wrap=True)


# -- send: the per-event table, its summary, the plan -------------------------------------------


class EventScreen:
    """Where a ``Report`` puts its table rows and its warnings: one console, the column widths
    fixed for its width once, the header over the first chunk only."""

    def __init__(self, console: Console):
        self.console = console
        self._widths = column_widths(console.width)
        self._header_shown = False

    def rows(self, rows: list[Row]) -> None:
        layout = self._widths
        table = Table(
            show_header=not self._header_shown,
            box=None,
            padding=(0, 1, 0, 0),
            header_style="bold",
        )
        for title, width in layout.items():
            table.add_column(title, width=width, no_wrap=True, overflow="ellipsis")
        for source, line, message_id, event, email, campaign, outcome, reason, detail in rows:
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
        self._header_shown = True
        self.console.print(table)

    def warning(self, text: str) -> None:
        warning(self.console, text)


def summary(
    console: Console,
    report: Report,
    stats: ReadStats,
    interrupted: bool = False,
    read_complete: bool = False,
) -> None:
    """The end of a send: lines read, outcomes and reasons, surveys per campaign, near misses,
    and what the table left out."""
    c = report.counts
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
    for outcome in _SUMMARY_ORDER:
        _outcome_rows(table, c.outcomes[outcome], outcome, c.reasons)
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
    if report.finished_earlier:
        already = sum(c.already_per_campaign.values())
        # --since/--until/--event/--campaign/--limit may keep matched events of the input out
        held = "selection" if c.reasons[(Outcome.SKIPPED, FILTERED)] else "input"
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
    if report.rows_over_max:
        console.print(
            Text(
                f"{report.rows_over_max:,} more rows not shown after the first "
                f"{report.max_rows:,} (--report FILE or --output ndjson lists every record, "
                "--all-rows prints them all)",
                style="dim",
            )
        )
    if report.rows_hidden:
        console.print(
            Text(
                f"{report.rows_hidden:,} rows for events not surveyed (unmatched, already sent, "
                "filtered) not shown (--all-rows shows them)",
                style="dim",
            )
        )


def _outcome_rows(table: Table, total: int, outcome: Outcome, reasons: Counter) -> None:
    """An outcome's rows of the summary: its count without a reason, then each reason's."""
    if not total:
        return
    why = sorted(((r, n) for (o, r), n in reasons.items() if o == outcome), key=lambda x: -x[1])
    plain = total - sum(n for _, n in why)
    if plain:
        table.add_row(Text(outcome, style=_STYLES[outcome]), "", f"{plain:,}")
    for reason, count in why:
        table.add_row(Text(outcome, style=_STYLES[outcome]), Text(reason), f"{count:,}")


def _skipped_files(stats: ReadStats) -> str:
    """The files a folder walk passed over because they do not start like JSON."""
    count = stats.skipped_files
    if not count:
        return ""
    return f", {count:,} file{'s' if count != 1 else ''} skipped (not JSON)"


def plan(
    console: Console,
    plan: Plan,
    delivery: Delivery,
    base_url: str,
    ledger_where: Path | None,
    held: tuple[int, int] | None,
) -> None:
    """The plan of a live send, on stderr: what it will send, how, where and against what.
    ``ledger_where`` is None without a ledger; ``held`` is the surveys the ledger holds as
    sent and as uncertain, None for a new one."""
    if plan.total:
        took = requests_line(plan.requests, delivery.batch_size, delivery.rate_limit)
        lines = [f"Plan: {plan.total:,} surveys in {took}"]
    else:
        lines = ["Plan: nothing to send"]
    for campaign, count in sorted(plan.surveys.items()):
        lines.append(f"  {visible(campaign)}: {count:,} surveys")
    if plan.already_sent:
        lines.append(f"  already sent by earlier runs: {plan.already_sent:,} (not sent again)")
    if plan.uncertain:
        lines.append(
            f"  uncertain from earlier runs: {plan.uncertain:,} (not resent without "
            "--retry-uncertain)"
        )
    lines.append(f"  API: {base_url}")
    if ledger_where is None:
        lines.append("  ledger: none (--no-ledger): a re-run may survey again")
    elif held is None:
        lines.append(f"  ledger: {ledger_where} (new: no earlier run is known)")
    else:
        sent, uncertain = held
        lines.append(f"  ledger: {ledger_where} (holding {sent:,} sent, {uncertain:,} uncertain)")
    console.print(Text("\n".join(visible(line) for line in lines)), soft_wrap=True)


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


# The table's columns. Outcome is as wide as its longest value, so "uncertain" is never cut;
# messageId, then campaign, leave a narrow terminal first; source, event, email and reason
# share the rest, event and email up to a cap, so that a wide terminal gives its room to the
# source (a long path) and the reason (Retently's message).
_COLUMNS = ("source", "messageId", "event", "email", "campaign", "outcome", "reason")
_FIXED = {"messageId": 12, "campaign": 10, "outcome": max(map(len, Outcome))}
_LEAST = {"source": 12, "event": 14, "email": 18, "reason": 14}
_SHARE = {"source": 0.2, "event": 0.2, "email": 0.25, "reason": 0.35}
_CAP = {"event": 24, "email": 30}
_LEFT_OVER = {"source": 0.3, "reason": 0.7}  # what the capped columns do not take


def column_widths(total: int) -> dict[str, int]:
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


# -- diff and coverage --------------------------------------------------------------------------


def input_note(console: Console, stats: ReadStats, bad: Counter) -> None:
    """What a preview read, and what it ignored as malformed."""
    note = f"{stats.lines:,} lines read from {stats.sources:,} source(s)"
    if stats.skipped_files:
        note += f", {stats.skipped_files:,} file(s) skipped (not JSON)"
    if bad:
        note += "; malformed and ignored: " + ", ".join(f"{r} {n:,}" for r, n in bad.items())
    console.print(Text(note, style="dim"))


def diff(out: Console, differ: Differ, old: Config, new: Config) -> None:
    """Surveys per campaign before and after, then the event names that change and how."""
    campaigns = sorted(
        set(differ.before) | set(differ.after) | {c.id for c in old.campaigns + new.campaigns}
    )
    table = Table(box=None, pad_edge=False, header_style="bold", title="surveys per campaign",
                  title_justify="left", title_style="bold")  # fmt: skip
    for column in ("campaign", "before", "after", "change"):
        table.add_column(column, justify="left" if column == "campaign" else "right")
    for campaign in campaigns:
        before, after = differ.before[campaign], differ.after[campaign]
        delta = after - before
        style = "green" if delta > 0 else "red" if delta < 0 else "dim"
        table.add_row(
            Text(visible(campaign)), f"{before:,}", f"{after:,}", Text(f"{delta:+,}", style=style)
        )
    out.print(table)
    if not differ.changed:
        out.print(Text("No change: both configs send the same surveys for these events."))
        return
    out.print(Text("\nevent names", style="bold"))
    for name, entry in sorted(differ.names.items(), key=lambda kv: _weight(kv[1]), reverse=True):
        out.print(Text(f"{name!r} {entry.verdict}", style="bold"))
        for kind, sign in (("removed", "-"), ("added", "+"), ("changed", "~")):
            for campaign, count in getattr(entry, kind).most_common():
                examples = ", ".join(entry.examples.get((kind, campaign), []))
                line = f"  {sign} {_WHAT[kind]} {campaign}: {count:,} events   e.g. {examples}"
                out.print(Text(visible(line)), soft_wrap=True)
        for change, count in entry.fields.most_common():
            line = f"      {change} in {count:,} survey{'s' if count != 1 else ''}"
            out.print(Text(visible(line)), soft_wrap=True)


_WHAT = {"removed": "no longer in", "added": "now in", "changed": "sends differently to"}


def _weight(entry) -> int:
    return sum(entry.added.values()) + sum(entry.removed.values()) + sum(entry.changed.values())


def coverage(out: Console, summary: dict) -> None:
    """``Coverage.summary()`` as tables: every event name, then the properties."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("event", "count", "campaigns", "notes"):
        table.add_column(column, justify="right" if column == "count" else "left")
    for row in summary["events"]:
        notes = []
        if row["near_miss_of"]:
            notes.append(f"near miss of {row['near_miss_of']!r}")
        if row["missing_email"]:
            where = ", ".join(f"{p} {n:,}" for p, n in row["email_found_at"].items())
            notes.append(
                f"{row['missing_email']:,} without email"
                + (f" (found at {where})" if where else "")
            )
        if row["invalid_email"]:
            notes.append(f"{row['invalid_email']:,} invalid email")
        if row.get("email_from_identify"):
            notes.append(f"{row['email_from_identify']:,} with the email from identify calls")
        style = "" if row["campaigns"] else "dim"
        table.add_row(
            Text(repr(row["event"]), style=style),
            f"{row['count']:,}",
            Text(visible(", ".join(row["campaigns"])) or "-", style=style),
            Text(visible("; ".join(notes)), style="yellow" if notes else ""),
        )
    out.print(table)
    counts = f"{summary['track_events']:,} Track events, {summary['not_track']:,} other messages"
    out.print(Text(visible(f"{counts}; email looked up at {', '.join(summary['email_paths'])}")))
    if summary["mapped_never_seen"]:
        names = ", ".join(repr(n) for n in summary["mapped_never_seen"])
        out.print(Text(f"mapped but never seen (typos?): {names}", style="yellow"), soft_wrap=True)
    if summary["properties"]:
        _properties(out, summary["properties"])


def _properties(out: Console, rows: list[dict]) -> None:
    """What the customers' properties would be: one type each, and what does not fit."""
    table = Table(box=None, pad_edge=False, header_style="bold", title="properties sent",
                  title_justify="left", title_style="bold")  # fmt: skip
    for column in ("property", "count", "type", "notes"):
        table.add_column(column, justify="right" if column == "count" else "left")
    fixes = []
    for row in rows:
        notes = [f"{kind} {n:,}" for kind, n in row["conflicts"].items()]
        notes = [f"also seen as {', '.join(notes)}"] if notes else []
        if row["left_out"]:
            notes.append(f"{row['left_out']:,} left out (not {row['type']})")
        if row["empty"]:
            notes.append(f"{row['empty']:,} empty, left out")
        if row["other_date_format"]:
            notes.append(f"{row['other_date_format']:,} dates like MM/DD/YYYY, not read as dates")
        kind = (row["type"] or "-") + (" (forced)" if row["forced"] else "")
        table.add_row(
            Text(visible(row["name"])),
            f"{row['count']:,}",
            kind,
            Text(visible("; ".join(notes)), style="yellow" if notes else ""),
        )
        if row["fix"]:
            fixes.append(row["fix"])
    out.print(table)
    if fixes:
        out.print(Text("to give each property one type that fits its values, add to the config:"))
        for fix in fixes:
            out.print(Text(visible(f"  {fix}"), style="yellow"), soft_wrap=True)


# -- check, campaigns and the ledger ------------------------------------------------------------


def mapping(out: Console, config: Config) -> None:
    """The config as understood: campaign -> events, event -> campaigns, and the rest."""
    out.print(Text(f"{visible(str(config.path))}: OK", style="green"))
    out.print(Text("campaign -> events", style="bold"))
    campaigns = Table(box=None, pad_edge=False)
    campaigns.add_column("campaign", style="bold")
    campaigns.add_column("delay")
    campaigns.add_column("events")
    for campaign in config.campaigns:
        delay = "campaign's own" if campaign.delay is None else f"{campaign.delay} d"
        campaigns.add_row(
            Text(visible(campaign.id)), delay, Text(", ".join(repr(e) for e in campaign.events))
        )
    out.print(campaigns)
    out.print(Text("event -> campaigns", style="bold"))
    events = Table(box=None, pad_edge=False)
    events.add_column("event", style="bold")
    events.add_column("campaigns")
    for name, mapped in sorted(config.campaigns_by_event().items()):
        events.add_row(Text(repr(name)), Text(visible(", ".join(c.id for c in mapped))))
    out.print(events)
    paths = ", ".join(config.email_paths)
    out.print(Text(visible(f"email looked up at: {paths}")))
    if config.from_identify:
        out.print(Text("else the email learned from Identify calls (identities.from_identify)"))
    if config.exclude:
        out.print(Text(visible(f"properties excluded: {', '.join(sorted(config.exclude))}")))
    if config.types:
        forced = ", ".join(f"{k}: {v}" for k, v in sorted(config.types.items()))
        out.print(Text(visible(f"property types forced: {forced}")))


def campaigns(out: Console, found: list[dict], mapped: set[str]) -> None:
    """The account's campaigns; those the config maps in bold."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("id", "name", "metric", "type", "channel", "active"):
        table.add_column(column)
    for c in found:
        table.add_row(
            Text(visible(str(c.get("id"))), style="bold" if str(c.get("id")) in mapped else ""),
            Text(visible(str(c.get("name", "")))),
            Text(visible(str(c.get("metric", "")))),
            Text(visible(str(c.get("type", "")))),
            Text(visible(str(c.get("channel", "")))),
            "yes" if c.get("isActive") else "no",
        )
    out.print(table)


LEDGER_COLUMNS = ("state", "recorded", "campaign", "event", "email", "messageId", "status")


def ledger_entries(out: Console, rows: Iterable[tuple]) -> None:
    """``ledger list``: one row of ``LEDGER_COLUMNS`` values per survey."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in LEDGER_COLUMNS:
        table.add_column(column, no_wrap=column in ("state", "recorded"))
    for row in rows:
        table.add_row(*(Text(visible(str(value))) for value in row))
    out.print(table)


def ledger_counts(per_campaign: dict[str, Counter], states: list[str]) -> list[str]:
    """``ledger status``: surveys per campaign and state, as lines of plain text."""
    width = max(len(c) for c in per_campaign)
    lines = [f"{'campaign':<{width}}  " + "  ".join(f"{s:>9}" for s in states)]
    for campaign, counts in sorted(per_campaign.items()):
        lines.append(f"{campaign:<{width}}  " + "  ".join(f"{counts[s]:>9,}" for s in states))
    return lines
