"""``retently ledger``: read the delivery ledger a send would use, and settle the surveys
whose delivery is unknown. The queries are in ``ledger.py``; this is the command line."""

from __future__ import annotations

import os
import shlex
import sqlite3
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import click
import orjson
from rich.console import Console
from rich.text import Text

from retently_cli import render
from retently_cli.cli.options import (
    CONTEXT,
    LEDGER_WIDTH,
    RetentlyCommand,
    base_url_in_use,
    color_option,
    config_option,
    ledger_option,
    load_or_exit,
    stderr_console,
    stdout_console,
)
from retently_cli.config import Config, find_config
from retently_cli.errors import UsageFailure
from retently_cli.ledger import (
    LEDGER_ENV,
    PENDING,
    SENT,
    UNCERTAIN,
    Ledger,
    LedgerBusy,
    LedgerInvalid,
    LedgerLost,
    default_ledger_path,
    event_key,
    lock_holder,
)
from retently_cli.visible import visible

IN_FLIGHT = "in_flight"  # pending rows of a run that is sending right now
LARGE_INPUT_BYTES = 1_000_000  # files this large, or any folder or URL, make a large input


def tell_where(console: Console, path: Path, new: bool, sources, name_it: bool = True) -> None:
    """A live send names its ledger (unless its plan does: ``name_it``). A new one over a large
    input gets a warning, unless --ledger named it: a backfill begun on another machine, or
    with another ledger, would be sent again."""
    if name_it:
        console.print(Text(visible(f"ledger: {path}" + (" (new)" if new else ""))), soft_wrap=True)
    chosen = click.get_current_context().get_parameter_source("ledger_path")
    if new and chosen != click.core.ParameterSource.COMMANDLINE and is_large(sources):
        console.print(
            Text(visible(f"warning: ledger {path} is new: nothing is known here of earlier "
                         "runs, so events sent from another machine or ledger would be sent "
                         f"again (--ledger or ${LEDGER_ENV} names another ledger)"),
                 style="yellow"),
            soft_wrap=True,
        )  # fmt: skip


def is_large(sources) -> bool:
    """A folder, a URL, or files of a megabyte or more: a backfill rather than a trial.
    stdin, whose size is unknown beforehand, is never large."""
    if sources.locations or sources.local_folders():
        return True
    return sum(_size(path) for path in sources.local_files()) >= LARGE_INPUT_BYTES


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


@click.group(
    context_settings=CONTEXT,
    epilog="""\b
Examples:
  retently ledger status
  retently ledger list --state uncertain
  retently ledger resolve --sent --all-uncertain
  retently ledger list --state uncertain -o ndjson | grep ann@ | retently ledger resolve --sent -
""",
)
def ledger():
    """Read the delivery ledger a send would use, and settle its uncertain surveys.

    The ledger is chosen as send chooses it: --ledger, else $RETENTLY_LEDGER, else the one for
    the API address (the config's base_url, or $RETENTLY_BASE_URL) in the user's data directory.
    status and list only read it, and never create it.
    """


def _located(console, config_path, ledger_path) -> tuple[Path, str]:
    """The ledger ``send`` would use with these options, and the API address in use. The
    config is optional: without one the address is the default (or $RETENTLY_BASE_URL)."""
    if config_path or find_config(None).exists():
        config = load_or_exit(console, config_path)
    else:
        config = Config(())
    base_url = base_url_in_use(config)
    if ledger_path:
        return Path(ledger_path), base_url
    return default_ledger_path(base_url, adopt=False), base_url


def _open(console, where: Path, read_only: bool) -> Ledger:
    try:
        opened = Ledger(where, read_only=read_only)
    except LedgerBusy as exc:
        raise UsageFailure([f"ledger {where}: {exc}; settle it once that run has ended"]) from None
    except LedgerInvalid as exc:
        raise UsageFailure([str(exc)]) from None
    except (OSError, sqlite3.Error) as exc:
        raise UsageFailure([f"ledger {where}: cannot open it ({exc})"]) from None
    if opened.without_wal:
        console.print(
            Text(visible(f"warning: ledger {where}: its folder is read-only, so it is read "
                         "without its latest records (in its -wal file)"), style="yellow"),
            soft_wrap=True,
        )  # fmt: skip
    return opened


def _no_ledger(console, where: Path) -> None:
    console.print(Text(visible(f"no ledger at {where}: nothing was recorded there yet")))


def _time(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _shown(state: str, busy: bool) -> str:
    """A pending row is in flight while a run holds the ledger; otherwise that run died
    before it learned the result, so its delivery is unknown, as for an uncertain one."""
    if state == PENDING:
        return IN_FLIGHT if busy else UNCERTAIN
    return state


@ledger.command(
    cls=RetentlyCommand,
    epilog="""\b
Examples:
  retently ledger status -c retently.yaml
  RETENTLY_LEDGER=~/backfill.sqlite3 retently ledger status
""",
)
@config_option
@ledger_option
@color_option
def status(config_path, ledger_path):
    """Where the ledger is, what it holds per state and campaign, when it was sent to, and
    what to do about uncertain surveys. Exit 0, also when there is no ledger yet."""
    console = stderr_console()
    where, base_url = _located(console, config_path, ledger_path)
    out = [f"ledger:      {where}", f"API address: {base_url}"]
    if not where.exists():
        _print(out + ["no ledger there yet: nothing was recorded with it"])
        return
    opened = _open(console, where, read_only=True)
    holder = lock_holder(where)
    per_campaign: dict[str, Counter] = {}
    for campaign, state, count in opened.counts():
        per_campaign.setdefault(campaign, Counter())[_shown(state, holder is not None)] += count
    first, last = opened.sent_between()
    opened.close()
    total = sum(per_campaign.values(), Counter())
    states = [s for s in (SENT, UNCERTAIN, IN_FLIGHT) if total[s]] or [SENT]
    out.append("surveys:     " + ", ".join(f"{total[s]:,} {s}" for s in states))
    if first is not None:
        out += [f"first sent:  {_time(first)}", f"last sent:   {_time(last)}"]
    if holder is not None:
        out.append(f"a run is using this ledger now ({holder})")
    if per_campaign:
        out += [""] + render.ledger_counts(per_campaign, states)
    if total[UNCERTAIN]:
        out += [""] + _next_steps(where, total[UNCERTAIN])
    _print(out)


def _next_steps(where: Path, uncertain: int) -> list[str]:
    them = "it" if uncertain == 1 else "them"
    option = f"--ledger {shlex.quote(str(where))}"
    return [
        f"{uncertain:,} uncertain: a run sent {them} but never learned whether Retently got "
        f"{them}; {'it is' if uncertain == 1 else 'they are'} not sent again until settled. "
        "Look the emails up in Retently, then:",
        f"  retently ledger list --state uncertain {option}",
        f"  retently ledger resolve --sent --all-uncertain {option}      # they arrived",
        f"  retently ledger resolve --not-sent --all-uncertain {option}  # they did not: the "
        "next send sends them",
        "(a FILE or - of `ledger list -o ndjson` lines settles some of them only; "
        "send --retry-uncertain resends them all)",
    ]


def _print(lines: list[str]) -> None:
    sys.stdout.write("".join(visible(line) + "\n" for line in lines))


@ledger.command(
    "list",
    cls=RetentlyCommand,
    epilog="""\b
Examples:
  retently ledger list --state uncertain
  retently ledger list --campaign 5e1f9a3c2b7d4e0012ab34cd -o ndjson | jq -r .email
""",
)
@config_option
@ledger_option
@click.option(
    "--state",
    type=click.Choice([UNCERTAIN.value, SENT.value]),  # the words: click matches enums by name
    help="Only surveys in this state (uncertain: delivery unknown; the ledger keeps no "
    "failed surveys: they are forgotten, so the next run sends them).",
)
@click.option("--campaign", metavar="ID", help="Only surveys of this campaign.")
@click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "ndjson"]),
    default="table",
    show_default=True,
    help="ndjson lines can be fed to `ledger resolve`.",
)
@color_option
def list_(config_path, ledger_path, state, campaign, output):
    """The surveys the ledger holds, oldest first: state, time recorded, campaign, event,
    email, messageId, HTTP status. Exit 0, also when there is no ledger yet."""
    console = stderr_console()
    where, _ = _located(console, config_path, ledger_path)
    if not where.exists():
        _no_ledger(console, where)
        return
    opened = _open(console, where, read_only=True)
    busy = lock_holder(where) is not None
    unknown = (UNCERTAIN,) if busy else (UNCERTAIN, PENDING)  # see _shown
    states = {UNCERTAIN: unknown, SENT: (SENT,)}.get(state, ())
    entries = opened.entries(states, campaign)
    try:
        if output == "ndjson":
            for entry in entries:
                sys.stdout.buffer.write(orjson.dumps(_record(entry, busy)) + b"\n")
        else:
            _table(entries, busy)
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        opened.close()


def _record(entry, busy: bool) -> dict:
    return {
        "key": entry.key,
        "message_id": None if entry.key.startswith("sha256:") else entry.key,
        "campaign": entry.campaign,
        "state": _shown(entry.state, busy),
        "email": entry.email,
        "event": entry.event,
        "event_time": _time(entry.event_time),
        "recorded_at": _time(entry.updated_at),
        "status": entry.status,
    }


def _table(entries, busy: bool) -> None:
    rows = (
        (
            _shown(e.state, busy),
            _time(e.updated_at),
            e.campaign,
            e.event or "",
            e.email or "",
            "(content hash)" if e.key.startswith("sha256:") else e.key,
            e.status or "",
        )
        for e in entries
    )
    render.ledger_entries(stdout_console(LEDGER_WIDTH), rows)


@ledger.command(
    cls=RetentlyCommand,
    epilog="""\b
Examples:
  retently ledger resolve --sent --all-uncertain
  retently ledger list --state uncertain -o ndjson > uncertain.ndjson   # edit it, then:
  retently ledger resolve --not-sent uncertain.ndjson
  retently ledger resolve --sent failed.ndjson     # a send's --failed file
""",
)
@config_option
@ledger_option
@click.option("--sent", "verdict", flag_value=SENT, help="They arrived: never send them again.")
@click.option(
    "--not-sent", "verdict", flag_value="not_sent", help="They did not: the next send sends them."
)
@click.option("--all-uncertain", is_flag=True, help="Every uncertain survey of the ledger.")
@click.argument("file", required=False, type=click.Path(dir_okay=False, allow_dash=True))
@color_option
def resolve(config_path, ledger_path, verdict, all_uncertain, file):
    """Settle uncertain surveys after checking in Retently whether they arrived.

    FILE (- for stdin) holds NDJSON lines naming the surveys: `ledger list -o ndjson` lines
    (their key and campaign), the records of `send --output ndjson`/--report (messageId and
    campaign; only those with outcome uncertain), or the lines of a send's --failed file (the
    event and its _retently campaign). A line without a campaign names every campaign of its
    event. Only uncertain surveys change; others named are left as they are. Refused while a
    send is using the ledger.
    """
    console = stderr_console()
    if verdict is None:
        raise click.UsageError("say --sent or --not-sent")
    if all_uncertain == (file is not None):
        raise click.UsageError("give --all-uncertain or a FILE (- for stdin), one of them")
    surveys = None if all_uncertain else _named_in(console, file)
    where, _ = _located(console, config_path, ledger_path)
    if not where.exists():
        raise UsageFailure([f"no ledger at {where}: nothing to resolve"])
    opened = _open(console, where, read_only=False)
    try:
        done = opened.resolve(surveys, sent=verdict == SENT)
    except (LedgerLost, sqlite3.Error) as exc:
        raise UsageFailure([f"ledger {where}: {exc}; nothing was changed"]) from None
    finally:
        opened.close()
    one = done.settled == 1
    settled = f"{done.settled:,} uncertain survey{'' if one else 's'}"
    if verdict == SENT:
        lines = [f"{settled} marked sent: never sent again"]
    else:
        lines = [f"{settled} marked not sent: the next send sends {'it' if one else 'them'}"]
    if done.left:
        lines.append(f"{done.left:,} named were not uncertain: left as they were")
    if done.unknown:
        lines.append(f"{done.unknown:,} named are not in ledger {where}")
    _print(lines)


def _named_in(console, path: str) -> list[tuple[str, str | None]]:
    if path == "-":
        return _named(console, sys.stdin.buffer, path)
    try:
        with open(path, "rb") as file:
            return _named(console, file, path)
    except OSError as exc:
        raise UsageFailure([f"{path}: cannot read it ({exc.strerror})"]) from None


def _named(console, file, name: str) -> list[tuple[str, str | None]]:
    """The (key, campaign) each line names; a line that is no JSON object stops it all."""
    surveys = []
    for number, line in enumerate(file, 1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            record = None
        if not isinstance(record, dict):
            raise UsageFailure([f"{name} line {number}: not a JSON object; nothing was changed"])
        survey = _identity(record)
        if survey is None:
            raise UsageFailure(
                [f"{name} line {number}: names no survey (no key, messageId or "
                 "event); nothing was changed"],
            )  # fmt: skip
        if survey is not False:
            surveys.append(survey)
    return surveys


def _identity(record: dict):
    """(key, campaign or None) for a ``ledger list`` line, a --failed line or a send's
    record; False for a send's record of another outcome; None when it names nothing."""
    meta = record.get("_retently")
    if isinstance(record.get("key"), str) and record["key"]:
        key, campaign = record["key"], record.get("campaign")
    elif isinstance(meta, dict):
        key, campaign = event_key(record), meta.get("campaign")
    elif "outcome" in record:
        if record["outcome"] != UNCERTAIN:
            return False
        if not record.get("message_id"):
            return None
        key, campaign = str(record["message_id"]), record.get("campaign")
    else:
        return None
    return key, campaign if isinstance(campaign, str) else None
