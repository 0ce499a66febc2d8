"""Commands that preview a config against real traffic: diff, coverage, init."""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path

import click
import orjson
from rich.console import Console
from rich.table import Table
from rich.text import Text

from retently_cli.account import account_answer, campaigns_from
from retently_cli.cli.options import (
    CONTEXT,
    INPUT_PATH,
    RetentlyCommand,
    api_client,
    api_key_file_option,
    config_option,
    exit_if_key_refused,
    jobs_option,
    load_or_exit,
    max_line_bytes_option,
    open_inputs,
    quiet_broken_pipe,
    selection_options,
    stderr_console,
    stdout_console,
    verbosity_options,
    warn_if_key_exposed,
    warn_of_empty_inputs,
)
from retently_cli.config import Config, load_config
from retently_cli.coverage import Coverage
from retently_cli.diffing import Differ
from retently_cli.errors import UsageFailure
from retently_cli.fanout import FanOut, Settled
from retently_cli.identities import identities_for_run
from retently_cli.matching import is_track
from retently_cli.outputs import check_output_paths
from retently_cli.readers import MAX_LINE_BYTES, BadInput, ReadStats, iter_messages
from retently_cli.sources import Selection
from retently_cli.starter import starter_config, transactional
from retently_cli.visible import visible
from retently_cli.vocabulary import EnvVar, ExitCode

PATHS = click.argument("paths", nargs=-1, type=INPUT_PATH)


def _stdout_console() -> Console:
    return stdout_console(160)


def _read(
    paths,
    before_wait=lambda: None,
    max_line_bytes=MAX_LINE_BYTES,
    selection=None,
    quiet=False,
    fanout: FanOut | None = None,
):
    """Every message of the inputs, once; malformed lines are counted in ``stats``. A URL that
    cannot be read at all fails here (exit 2); an empty input is warned of once read. With
    ``fanout``, the messages its workers settle are not given at all."""
    stats = ReadStats()
    bad: Counter[str] = Counter()
    console = stderr_console()
    inputs = open_inputs(console, paths, max_line_bytes, selection)

    def read():
        if fanout is None:
            yield from iter_messages(inputs, stats, before_wait)
            return
        fanout.warn = inputs.warn
        for source, entries in fanout.read(inputs, stats, before_wait):
            for entry in entries:
                if not isinstance(entry, Settled):
                    line, item = entry
                    yield source.name, line, item

    def messages():
        for name, line, item in read():
            if type(item) is BadInput:
                bad[item.reason] += 1
            else:
                yield name, line, item
        if not quiet:
            warn_of_empty_inputs(console, inputs, stats)

    return stats, bad, messages()


def _input_note(console: Console, stats: ReadStats, bad: Counter) -> None:
    note = f"{stats.lines:,} lines read from {stats.sources:,} source(s)"
    if stats.skipped_files:
        note += f", {stats.skipped_files:,} file(s) skipped (not JSON)"
    if bad:
        note += "; malformed and ignored: " + ", ".join(f"{r} {n:,}" for r, n in bad.items())
    console.print(Text(note, style="dim"))


@click.command(
    cls=RetentlyCommand,
    context_settings=CONTEXT,
    epilog="""\b
Examples:
  retently diff retently.yaml retently-new.yaml segment-logs/
  retently diff -o ndjson old.yaml new.yaml export.gz | jq -c 'select(.change=="added")'
  git show HEAD:retently.yaml > /tmp/old.yaml && retently diff /tmp/old.yaml retently.yaml logs/

\b
Exit codes:
  0    the two configs send exactly the same surveys for these events
  1    something changes
  2    usage or config error""",
)
@click.argument("old_config", type=click.Path(exists=True, dir_okay=False))
@click.argument("new_config", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "-o", "--output", type=click.Choice(["table", "ndjson"]), default="table", show_default=True,
    help="table: a summary of the changes; ndjson: every changed (event, campaign) decision.",
)  # fmt: skip
@selection_options
@max_line_bytes_option
@jobs_option
@verbosity_options
@PATHS
def diff(
    old_config, new_config, output, includes, excludes, max_line_bytes, jobs, verbose, quiet, paths
):
    """What changing OLD_CONFIG into NEW_CONFIG does to the events in PATHS.

    Both configs run over the same events in one pass (stdin is fine). Per campaign: surveys
    before, after and the difference; the event names that newly trigger, stop triggering or
    move between campaigns, with example customers. Nothing is sent.
    """
    console = stderr_console()
    old, new = _config(console, old_config, quiet), _config(console, new_config, quiet)
    selection = Selection(includes, excludes)
    identities = identities_for_run([old, new], paths, max_line_bytes, selection)
    differ = Differ(old, new, identities)
    ndjson = output == "ndjson"
    out = sys.stdout.buffer
    flush = out.flush if ndjson else lambda: None
    # Workers settle what neither config surveys: any name either maps is decided here.
    mapped = {**old.campaigns_by_event(), **new.campaigns_by_event()}
    fanout = FanOut.for_run(jobs, mapped, records=False)
    stats, bad, messages = _read(paths, flush, max_line_bytes, selection, quiet, fanout)
    try:
        for source, line, message in messages:
            for change in differ.compare(message):
                if ndjson:
                    record = _change_record(source, line, change)
                    out.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
        out.flush()
    except BrokenPipeError:
        quiet_broken_pipe()
    except KeyboardInterrupt:
        sys.exit(ExitCode.INTERRUPTED)
    if not quiet:
        _show_diff(stderr_console() if ndjson else _stdout_console(), differ, old, new)
        _input_note(console, stats, bad)
    sys.exit(ExitCode.PROBLEMS if differ.changed else ExitCode.OK)


def _config(console: Console, path: str, quiet: bool) -> Config:
    config = load_config(Path(path))
    if not quiet:
        warn_if_key_exposed(console, config)
    return config


def _change_record(source: str, line: int, change) -> dict:
    return {
        "source": source,
        "line": line,
        "message_id": change.message_id,
        "event": change.event,
        "campaign": change.campaign,
        "email": change.email,
        "change": change.kind,
        "old_request": change.old,
        "new_request": change.new,
        "fields": change.fields,
    }


def _show_diff(out: Console, differ: Differ, old: Config, new: Config) -> None:
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


@click.command(
    cls=RetentlyCommand,
    context_settings=CONTEXT,
    epilog="""\b
Examples:
  retently coverage -c retently.yaml segment-logs/
  zcat export.gz | retently coverage -o json - | jq '.mapped_never_seen'""",
)
@config_option
@click.option(
    "-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@selection_options
@max_line_bytes_option
@verbosity_options
@PATHS
def coverage(config_path, output, includes, excludes, max_line_bytes, verbose, quiet, paths):
    """How the config covers a log: every Track event name, mapped or not.

    For each distinct Track event name in PATHS: its count and the campaign(s) it maps to;
    near misses of mapped names; how many matched events lack an email at email_paths and
    where it was found instead; the mapped names never seen (likely typos); and the properties
    the surveys would carry, with their types, the values that do not fit and the
    properties.types line that fixes them. One pass.
    """
    console = stderr_console()
    config = load_or_exit(console, config_path, quiet)
    selection = Selection(includes, excludes)
    identities = identities_for_run([config], paths, max_line_bytes, selection)
    result = Coverage(config, identities=identities)
    stats, bad, messages = _read(
        paths, max_line_bytes=max_line_bytes, selection=selection, quiet=quiet
    )
    try:
        for _, _, message in messages:
            result.add(message)
    except KeyboardInterrupt:
        sys.exit(ExitCode.INTERRUPTED)
    summary = result.summary()
    if output == "json":
        sys.stdout.write(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    else:
        _show_coverage(_stdout_console(), summary)
    if not quiet:
        _input_note(console, stats, bad)


def _show_coverage(out: Console, summary: dict) -> None:
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
        _show_properties(out, summary["properties"])


def _show_properties(out: Console, rows: list[dict]) -> None:
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


@click.command(
    cls=RetentlyCommand,
    context_settings=CONTEXT,
    epilog="""\b
Examples:
  retently init
  retently init retently.yaml --from-log segment-logs/
  RETENTLY_API_KEY=... retently init --from-log export.gz --force""",
)
@click.argument("path", default="retently.yaml", type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "--from-log", "logs", multiple=True, type=INPUT_PATH,
    metavar="PATH", help="List this log's most frequent Track event names as candidates.",
)  # fmt: skip
@click.option("--force", is_flag=True, help="Overwrite PATH if it exists.")
@api_key_file_option
@verbosity_options
def init(path, logs, force, api_key_file, verbose, quiet):
    """Write a commented starter config to PATH (default ./retently.yaml).

    With an API key ($RETENTLY_API_KEY or --api-key-file) it lists the account's transactional
    campaigns, ids with their names as comments. It never overwrites a file without --force.
    """
    console = stderr_console()
    target = Path(path)
    if path != "-" and target.exists() and not force:
        raise UsageFailure([f"{path} exists; --force overwrites it"])
    own = Selection(own_outputs=(path,) if path != "-" and not target.exists() else ())
    if path != "-" and logs:
        read = open_inputs(console, logs, selection=own, announce_stdin=False)  # not read here
        inputs = read.local_files() + read.inputs_among([path])
        check = check_output_paths({"PATH": path}, inputs, [], None)
        if check.problems:
            raise UsageFailure(
                [f"{path}: it is also a --from-log input; write the config elsewhere"]
            )
    candidates = _frequent_names(logs, own) if logs else None
    campaigns = _account_campaigns(console, api_key_file, quiet)
    text = starter_config(campaigns, candidates, ", ".join(logs) if logs else None)
    if path == "-":
        sys.stdout.write(text)
        return
    target.write_text(text, encoding="utf-8")
    if not quiet:
        found = f", {len(campaigns)} campaigns from the account" if campaigns else ""
        listed = f", {min(len(candidates), 20)} candidate events" if candidates else ""
        console.print(
            Text(
                visible(
                    f"wrote {path}{found}{listed}; next: edit it, then `retently check -c {path}`"
                )
            )
        )


def _frequent_names(logs, selection: Selection) -> list[tuple[str, int]]:
    names: Counter = Counter()
    _, _, messages = _read(logs, selection=selection)
    for _, _, message in messages:
        name = message.get("event")
        if is_track(message) and isinstance(name, str) and name:
            names[name] += 1
    return names.most_common()


def _account_campaigns(console: Console, api_key_file, quiet) -> list[dict] | None:
    """The account's transactional campaigns, when a key is at hand; None otherwise."""
    if api_key_file is None and not os.environ.get(EnvVar.API_KEY):
        if not quiet:
            console.print(Text("no API key: campaign ids are left for you to fill in", style="dim"))
        return None
    with api_client(Config(()), api_key_file) as client:
        answer = account_answer(client.campaigns)
    exit_if_key_refused(answer)
    found = campaigns_from(answer)
    if found is None:
        console.print(
            Text("could not list the account's campaigns; ids left to fill in", style="yellow")
        )
        return None
    return transactional(found)
