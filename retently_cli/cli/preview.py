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
from rich.text import Text

from retently_cli import render
from retently_cli.account import account_answer, campaigns_from
from retently_cli.apikey import key_variables
from retently_cli.cli.options import (
    CONTEXT,
    INPUT_PATH,
    RetentlyCommand,
    api_client,
    api_key_file_option,
    config_option,
    exit_if_key_refused,
    input_warning,
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
from retently_cli.interrupts import Interrupts
from retently_cli.keys_on_disk import KeysOnDisk
from retently_cli.matching import is_track
from retently_cli.outputs import check_output_paths
from retently_cli.readers import MAX_LINE_BYTES, BadInput, ReadStats, iter_messages
from retently_cli.sources import Selection
from retently_cli.starter import starter_config, transactional
from retently_cli.visible import visible
from retently_cli.vocabulary import EnvVar, ExitCode

PATHS = click.argument("paths", nargs=-1, type=INPUT_PATH)


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
    interrupts = Interrupts()  # acted on between events and while waiting, never in a lock
    identities = _identities([old, new], paths, max_line_bytes, selection, interrupts)
    differ = Differ(old, new, identities, KeysOnDisk)
    ndjson = output == "ndjson"
    out = sys.stdout.buffer
    flush = out.flush if ndjson else lambda: None
    # Workers settle what neither config surveys: any name either maps is decided here.
    mapped = {**old.campaigns_by_event(), **new.campaigns_by_event()}
    fanout = FanOut.for_run(
        jobs, mapped, records=False, hidden=key_variables(old, new), warn=input_warning(console)
    )

    def before_wait():
        flush()
        interrupts.check()

    stats, bad, messages = _read(paths, before_wait, max_line_bytes, selection, quiet, fanout)
    try:
        with interrupts.noted():
            for source, line, message in messages:
                if interrupts.pending:
                    interrupts.check()
                for change in differ.compare(message):
                    if ndjson:
                        record = _change_record(source, line, change)
                        out.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
            interrupts.check()
        out.flush()
    except BrokenPipeError:
        quiet_broken_pipe()
    except KeyboardInterrupt:
        sys.exit(ExitCode.INTERRUPTED)
    if not quiet:
        render.diff(stderr_console() if ndjson else stdout_console(), differ, old, new)
        render.input_note(console, stats, bad)
    sys.exit(ExitCode.PROBLEMS if differ.changed else ExitCode.OK)


def _identities(configs, paths, max_line_bytes, selection, interrupts: Interrupts):
    """``identities_for_run``; a signal meanwhile ends the command as one in the main read."""
    try:
        with interrupts.noted():
            return identities_for_run(configs, paths, max_line_bytes, selection, interrupts.check)
    except KeyboardInterrupt:
        sys.exit(ExitCode.INTERRUPTED)


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
    interrupts = Interrupts()  # acted on between events and while waiting, never in a lock
    identities = _identities([config], paths, max_line_bytes, selection, interrupts)
    result = Coverage(config, identities=identities, keys=KeysOnDisk)
    stats, bad, messages = _read(
        paths, interrupts.check, max_line_bytes=max_line_bytes, selection=selection, quiet=quiet
    )
    try:
        with interrupts.noted():
            for _, _, message in messages:
                if interrupts.pending:
                    interrupts.check()
                result.add(message)
            interrupts.check()
    except KeyboardInterrupt:
        sys.exit(ExitCode.INTERRUPTED)
    summary = result.summary()
    if output == "json":
        sys.stdout.write(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    else:
        render.coverage(stdout_console(), summary)
    if not quiet:
        render.input_note(console, stats, bad)


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
