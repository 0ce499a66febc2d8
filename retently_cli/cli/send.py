"""``send``: the one command that reads events and surveys customers, and its wiring."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shlex
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, cast

import click
from rich.console import Console
from rich.text import Text

from retently_cli import render
from retently_cli.apikey import key_variables
from retently_cli.cli.ledger import tell_where
from retently_cli.cli.options import (
    CONTEXT,
    EXIT_CODES,
    INPUT_PATH,
    TIME,
    RetentlyCommand,
    TolerantStream,
    api_client,
    api_key_file_option,
    base_url_in_use,
    config_option,
    jobs_option,
    ledger_option,
    load_or_exit,
    max_lateness_option,
    max_line_bytes_option,
    open_inputs,
    refuse_placeholders,
    refuse_unknown_filters,
    selection_options,
    stderr_console,
    verbosity_options,
    warn_of_empty_inputs,
)
from retently_cli.client import RetentlyClient
from retently_cli.config import Config
from retently_cli.deadletters import DeadLetters
from retently_cli.delivery import (
    NOT_SENT,
    Dispatcher,
    RateLimiter,
    RetryPolicy,
    Sender,
)
from retently_cli.errors import UsageFailure
from retently_cli.fanout import FanOut
from retently_cli.identities import identities_for_run, rereading_problem
from retently_cli.interrupts import Interrupts
from retently_cli.keys_on_disk import KeysOnDisk
from retently_cli.ledger import (
    PENDING,
    SENT,
    Ledger,
    LedgerBusy,
    LedgerInvalid,
    LedgerLost,
    default_ledger_path,
)
from retently_cli.logs import get_logger
from retently_cli.matching import Matcher
from retently_cli.outputs import Output, PathCheck, ReplacingOutput, check_output_paths
from retently_cli.planning import Filters, Planner
from retently_cli.progress import SendProgress
from retently_cli.pruning import Window
from retently_cli.readers import ReadStats
from retently_cli.report import (
    EXIT_INTERRUPTED,
    EXIT_PROBLEMS,
    EXIT_UNAUTHORIZED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    FAILED,
    UNCERTAIN,
    Report,
)
from retently_cli.run import (
    Delivery,
    DryRunDelivery,
    LiveDelivery,
    Plan,
    Records,
    SendJob,
    make_plan,
)
from retently_cli.sources import Inputs, Selection
from retently_cli.subscriber import type_conflicts
from retently_cli.visible import visible

log = get_logger(__name__)


class _Ending:
    """--summary-json: the run's counts, exit code and timings, written once however the run
    ends (a usage error, Ctrl-C, the circuit breaker, a failure, or a clean finish)."""

    def __init__(self, path: str | None = None):
        self.path = path
        self.started = time.time()
        self.dry_run = False
        self.interrupted = False
        self.plan: Plan | None = None
        self.report: Report | None = None
        self.job: SendJob | None = None
        self.failed_file: Output | None = None  # --failed, finished even on a quick quit
        self.written = False

    def write(self, code: int) -> None:
        if self.path is None or self.written:
            return
        self.written = True
        data = json.dumps(self.record(code)) + "\n"
        try:
            if self.path == "-":
                sys.stdout.flush()
                sys.stdout.write(data)
                sys.stdout.flush()
            else:
                Path(self.path).write_text(data, encoding="utf-8")
        except OSError as exc:
            click.echo(f"retently: --summary-json {self.path}: cannot write it ({exc})", err=True)

    def record(self, code: int) -> dict:
        ended = time.time()
        job = self.job
        record: dict[str, Any] = {
            "exit_code": code,
            "dry_run": self.dry_run,
            "interrupted": self.interrupted,
        }
        if self.report is not None:
            record.update(self.report.summary_record(job.stats if job else None))
        if job is not None:
            record["requests"] = job.requests
            record["read_complete"] = job.read_complete
        if job is not None and not self.dry_run:
            record["api_unavailable"] = job.delivery.unavailable
        if self.plan is not None:
            record["plan"] = {
                "surveys": self.plan.total,
                "requests": self.plan.requests,
                "already_sent": self.plan.already_sent,
                "uncertain": self.plan.uncertain,
            }
        record.update(
            started_at=_iso(self.started),
            ended_at=_iso(ended),
            duration_s=round(ended - self.started, 3),
        )
        return record


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


@contextlib.contextmanager
def _written_at_exit(ending: _Ending) -> Iterator[None]:
    """Writes ``ending`` on every way out of the command, with the exit code it has."""
    try:
        yield
    except SystemExit as exc:
        ending.write(exc.code if isinstance(exc.code, int) else EXIT_PROBLEMS)
        raise
    except click.exceptions.Exit as exc:
        ending.write(exc.exit_code)
        raise
    except click.ClickException as exc:  # a RetentlyError, shown by click once this ends
        ending.write(exc.exit_code)
        raise
    except KeyboardInterrupt:
        ending.interrupted = True
        ending.write(EXIT_INTERRUPTED)
        raise
    except BaseException:
        ending.write(EXIT_PROBLEMS)
        raise


@dataclasses.dataclass(frozen=True)
class SendOptions:
    """``send``'s options and arguments, as click parsed them (see ``send --help``)."""

    paths: tuple[str, ...]
    config_path: str | None
    dry_run: bool
    output: str
    all_rows: bool
    max_rows: int
    api_key_file: str | None
    ledger_path: str | None
    no_ledger: bool
    retry_uncertain: bool
    failed_path: str | None
    report_path: str | None
    since: datetime | None
    until: datetime | None
    events: tuple[str, ...]
    campaigns: tuple[str, ...]
    limit: int | None
    grace: float
    yes: bool
    summary_json: str | None
    max_lateness: float
    includes: tuple[str, ...]
    excludes: tuple[str, ...]
    max_line_bytes: int
    jobs: int | None
    no_progress: bool
    verbose: int  # the retently logger's level, set by RetentlyCommand for the command
    quiet: bool

    def filters(self) -> Filters:
        """A fresh planner's filters (each ``Planner`` counts its own --limit)."""
        return Filters(
            self.since, self.until, frozenset(self.events), frozenset(self.campaigns), self.limit
        )


@click.command(
    cls=RetentlyCommand,
    context_settings=CONTEXT,
    epilog="""\b
Examples:
  retently send --dry-run -c config.example.yaml examples/
  retently send -n --output ndjson examples/batch.json | jq -c 'select(.outcome=="dry_run")'
  aws s3 cp s3://bucket/segment-logs/SRC/1764201600000/x.gz - | retently send -n -
  RETENTLY_API_KEY=... retently send -c retently.yaml segment-logs/

"""
    + EXIT_CODES,
)
@config_option
@click.option(
    "-n", "--dry-run", is_flag=True, help="Decide and report everything, but send nothing."
)
@click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "ndjson"]),
    default="table",
    show_default=True,
    help="table: a Rich report on stderr; ndjson: one JSON record per decision on stdout.",
)
@click.option(
    "--all-rows",
    is_flag=True,
    help="Show a table row for every event, with no limit on the rows shown.",
)
@click.option(
    "--max-rows",
    type=click.IntRange(min=0),
    default=1000,
    show_default=True,
    metavar="N",
    help="Table rows shown before the rest are only counted.",
)
@api_key_file_option
@ledger_option
@click.option("--no-ledger", is_flag=True, help="Keep no ledger: a re-run may survey again.")
@click.option(
    "--retry-uncertain",
    is_flag=True,
    help="Resend surveys whose delivery is unknown (a run died or a connection broke after "
    "sending). Without it they are reported, never resent.",
)
@click.option(
    "--failed",
    "failed_path",
    metavar="FILE",
    type=click.Path(dir_okay=False, writable=True, allow_dash=False),
    help="Write each failed or uncertain event there, as read plus a _retently field, to be "
    "fed back to retently send after a fix.",
)
@click.option(
    "--report",
    "report_path",
    metavar="FILE",
    type=click.Path(dir_okay=False, writable=True),
    help="Also write every record as NDJSON to FILE (- is stdout).",
)
@click.option("--since", type=TIME, metavar="TIME", help="Only events at or after TIME (ISO-8601).")
@click.option("--until", type=TIME, metavar="TIME", help="Only events before TIME (ISO-8601).")
@click.option(
    "--event", "events", multiple=True, metavar="NAME", help="Only this event (repeatable)."
)
@click.option(
    "--campaign", "campaigns", multiple=True, metavar="ID", help="Only this campaign (repeatable)."
)
@click.option(
    "--limit", type=click.IntRange(min=0), metavar="N", help="Survey at most N (then skip)."
)
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    help="After Ctrl-C, how long requests in flight may take to finish.",
)
@click.option(
    "-y",
    "--yes",
    is_flag=True,
    help="Send without asking. On a terminal, a live send from files shows its plan (surveys, "
    "requests, duration, API, ledger) and asks first.",
)
@click.option(
    "--summary-json",
    metavar="FILE",
    help="Write the summary (counts, exit code, timings) there as one JSON object, however the "
    "run ends (- is stdout).",
)
@max_lateness_option
@selection_options
@max_line_bytes_option
@jobs_option
@click.option("--no-progress", is_flag=True, help="Draw no progress line on a terminal.")
@verbosity_options
@click.argument("paths", nargs=-1, type=INPUT_PATH)
def send(**params):
    """Survey the customers that Segment Track events in PATHS map to.

    PATHS are files or folders (walked recursively, in name order) of Segment messages: NDJSON,
    gzipped S3 exports, a JSON object, array or Tracking API batch; the format is read from the
    bytes. No PATH, or -, reads stdin. A PATH may be a URL (s3://bucket/prefix, with the s3
    extra). With --since/--until, day folders of a Segment export that cannot hold an event of
    the window are not opened.

    Surveys for the same campaign go out in batches of up to batch_size subscribers, at most
    rate_limit requests a minute; failures are retried with backoff. The ledger remembers
    every (messageId, campaign) delivered, so re-running a backfill surveys nobody twice.
    A live send from files first shows its plan and, on a terminal, asks (-y skips that).
    Filtered events are reported as skipped, never dropped. See the README.
    """
    options = SendOptions(**params)
    ending = _Ending(options.summary_json)
    # From here on, Ctrl-C, SIGTERM and SIGHUP are noted and acted on where nothing is held
    # (see Interrupts); a signal left unheeded a second is raised where it lands.
    interrupts = Interrupts()
    with _written_at_exit(ending), interrupts.noted():
        _send(options, ending, interrupts)


def _send(o: SendOptions, ending: _Ending, interrupts: Interrupts) -> NoReturn:
    console = stderr_console()
    ending.dry_run = o.dry_run
    checked = _check(console, o, ending)
    config = checked.config
    with contextlib.ExitStack() as opened:
        client = None if o.dry_run else _client(console, o, checked)
        ledger = _open_ledger(opened, console, o, checked)
        identities = identities_for_run(
            [config], o.paths, o.max_line_bytes, checked.selection, interrupts.check
        )
        if client is not None:
            ending.plan = _plan_and_ask(console, o, checked, identities, ledger, interrupts)
        job: SendJob  # made last; an output that cannot be written halts it
        outputs = opened.enter_context(
            _Outputs.open(console, o, checked, lambda out: job.halt(out.describe_error()))
        )
        for output in (outputs.stdout, outputs.report_file, outputs.failed_file):
            if output is not None:  # stopping, a write may wait only so long
                output.interrupts = interrupts
        ending.failed_file = outputs.failed_file
        report = _report(console, o, outputs)
        _warn_after_rows(checked.sources, report)
        records = Records(report, outputs.dead_letters, outputs.replaced_path)
        planner = Planner(o.filters(), ledger, o.retry_uncertain)
        stats = ReadStats()
        progress = _progress(console, o, stats, report, checked.sources)
        delivery = opened.enter_context(
            _delivery(console, o, config, client, ledger, records, planner, progress, interrupts)
        )
        fanout = _fanout(o, config, report)
        if fanout is not None:
            opened.callback(fanout.close)
        matcher = Matcher(config, identities, KeysOnDisk())
        job = SendJob(matcher, records, delivery, planner, stats, fanout, interrupts)
        stderr = cast(TolerantStream, console.file)
        stderr.on_failure = lambda: job.halt("stderr was closed")
        stderr.interrupts = interrupts
        ending.report, ending.job = report, job
        ended = _run(console, o, job, checked.sources, progress, outputs.streams, ending)
        interrupts.too_late()  # a signal now leaves the summary to finish
        code = _conclude(console, o, checked, job, ledger, outputs, ended)
        if not ended.clean:  # a worker is still waiting for an answer: do not wait for it
            _flush_all(outputs.streams)
            ending.write(code)
            os._exit(code)
    if outputs.stdout.error is not None:
        _quiet_stdout()
    sys.exit(code)


@dataclasses.dataclass(frozen=True)
class _Checked:
    """What ``send`` makes sure of before it opens anything: a usage error ends it there."""

    config: Config
    selection: Selection
    sources: Inputs
    base_url: str
    ledger_where: Path | None
    ledger_new: bool  # no ledger there yet: no earlier run is known
    paths: PathCheck
    # A plan reads the inputs once before the send reads them again: a pipe cannot be.
    unplanned: bool


def _check(console: Console, o: SendOptions, ending: _Ending) -> _Checked:
    if ending.path == "-" and (o.output == "ndjson" or "-" in (o.report_path, o.failed_path)):
        ending.path = None
        raise UsageFailure(["--summary-json -: stdout already carries the records; give a FILE"])
    config = load_or_exit(console, o.config_path, o.quiet)
    refuse_unknown_filters(config, o.campaigns, o.events)
    refuse_placeholders(console, config, warn_only=o.dry_run, quiet=o.quiet)
    # --summary-json last: a clash with another output is then named as its own.
    outputs = {"--report": o.report_path, "--failed": o.failed_path, "--summary-json": ending.path}
    selection = Selection(
        o.includes,
        o.excludes,
        _new_files(outputs.values()),
        Window(o.since, o.until, o.max_lateness),
    )
    sources = open_inputs(console, o.paths, o.max_line_bytes, selection)
    if config.from_identify and (problem := rereading_problem(sources)) is not None:
        raise UsageFailure([problem])  # before the ledger or anything else is opened
    log.info("inputs: %s", ", ".join(sources.paths))
    base_url = base_url_in_use(config)
    ledger_where = None if o.no_ledger else Path(o.ledger_path or default_ledger_path(base_url))
    paths = check_output_paths(
        outputs,
        sources.local_files()
        + sources.inputs_among(outputs.values())
        + (["-"] if sources.reads_stdin else []),
        sources.local_folders(),
        ledger_where,
    )
    if paths.problems:
        if any(problem.startswith("--summary-json ") for problem in paths.problems):
            ending.path = None  # written at the exit all the same, it would destroy that file
        raise UsageFailure(paths.problems)
    for warning in paths.warnings:
        console.print(Text(f"warning: {visible(warning)}", style="yellow"), soft_wrap=True)
    ledger_new = ledger_where is not None and not ledger_where.exists()
    unplanned = sources.reads_stdin or rereading_problem(sources) is not None
    return _Checked(
        config, selection, sources, base_url, ledger_where, ledger_new, paths, unplanned
    )


def _client(console: Console, o: SendOptions, checked: _Checked) -> RetentlyClient:
    sources = checked.sources
    return api_client(checked.config, o.api_key_file, sources.reads_stdin)


def _open_ledger(
    opened: contextlib.ExitStack, console: Console, o: SendOptions, checked: _Checked
) -> Ledger | None:
    """The run's ledger, closed with ``opened``; a live send names it."""
    ledger = _ledger(console, o, checked.base_url)
    if ledger is None:
        return None
    opened.callback(ledger.close)
    if not (o.dry_run or o.quiet):
        # A plan, shown to all but unplanned runs, names the ledger itself.
        name_it = checked.unplanned
        tell_where(console, ledger.path, checked.ledger_new, checked.sources, name_it=name_it)
    return ledger


def _plan_and_ask(
    console: Console,
    o: SendOptions,
    checked: _Checked,
    identities,
    ledger: Ledger | None,
    interrupts: Interrupts,
) -> Plan | None:
    """The plan of a live send from files, shown; on a terminal, the question whether to send
    it (anything but yes ends the run)."""
    asking = not o.yes and sys.stdin.isatty() and sys.stderr.isatty()
    if checked.unplanned:
        if not o.quiet:
            sources = checked.sources
            what = "stdin" if sources.reads_stdin else "a pipe or device, not a file,"
            console.print(Text(f"events from {what} cannot be planned: sending as they come"))
        return None
    if not asking and o.quiet:
        return None
    # Its own inputs: a selection counts the folders it prunes, and what a walk passes over is
    # said once, by the run itself.
    plan_selection = dataclasses.replace(checked.selection, pruned_folders=0)
    plan_inputs = open_inputs(console, o.paths, o.max_line_bytes, plan_selection)
    plan_inputs.warn = lambda text: None
    planner = Planner(o.filters(), ledger, o.retry_uncertain)
    # Its own matcher: a matcher remembers the messageIds it saw.
    matcher = Matcher(checked.config, identities, KeysOnDisk())
    config = checked.config
    fanout = FanOut.for_run(
        o.jobs, config.campaigns_by_event(), records=False, hidden=key_variables(config)
    )
    plan = _make_plan(console, checked.config, matcher, plan_inputs, planner, fanout, interrupts)
    where = (checked.base_url, ledger, checked.ledger_where, checked.ledger_new)
    _show_plan(console, plan, checked.config, *where)
    interrupts.check()  # one that came while the plan was shown
    if asking and plan.total and not _confirm(plan, interrupts):
        console.print(Text("retently: nothing was sent"))
        sys.exit(EXIT_PROBLEMS)
    return plan


@dataclasses.dataclass
class _Outputs:
    """Where the run writes: stdout, and the --report and --failed files. A write that fails
    calls ``on_failure`` (the run stops reading); closing them flushes stdout last."""

    stdout: Output
    streams: list[Output]  # the records' destinations
    report_file: Output | None
    failed_file: Output | None
    dead_letters: DeadLetters | None  # written to the --failed file
    replaced_path: str | None  # --failed F F: the input that the --failed file replaces

    @classmethod
    def open(cls, console: Console, o: SendOptions, checked: _Checked, on_failure) -> _Outputs:
        stdout = Output("stdout", sys.stdout.buffer, on_failure)
        streams = [stdout] if o.output == "ndjson" else []
        report_file = _open_output(console, o.report_path, stdout, on_failure)
        if report_file is not None and report_file not in streams:
            streams.append(report_file)
        failed_file: Output | None
        replaced_path = None
        if o.failed_path is not None and "--failed" in checked.paths.replaced:
            failed_file = ReplacingOutput(Path(o.failed_path), on_failure)
            replaced_path = o.failed_path
        else:
            failed_file = _open_output(console, o.failed_path, stdout, on_failure)
        dead_letters = DeadLetters(failed_file) if failed_file is not None else None
        return cls(stdout, streams, report_file, failed_file, dead_letters, replaced_path)

    def __enter__(self) -> _Outputs:
        return self

    def __exit__(self, *exc) -> None:
        for opened in (self.report_file, self.failed_file):
            if opened is not None and opened is not self.stdout:
                opened.close()
        self.stdout.flush()


def _report(console: Console, o: SendOptions, outputs: _Outputs) -> Report:
    return Report(
        render.EventScreen(console),
        outputs.streams,
        table=o.output == "table",
        all_rows=o.all_rows,
        quiet=o.quiet,
        max_rows=o.max_rows,
    )


def _warn_after_rows(sources: Inputs, report: Report) -> None:
    """Table rows wait in a buffer: a walk's warning comes after those of the files read
    before it, wherever the reader happened to wait (workers make that vary)."""
    say = sources.warn

    def warn(text: str) -> None:
        report.flush()
        say(text)

    sources.warn = warn


def _delivery(
    console: Console,
    o: SendOptions,
    config: Config,
    client: RetentlyClient | None,
    ledger: Ledger | None,
    records: Records,
    planner: Planner,
    progress: SendProgress | _NoProgress,
    interrupts: Interrupts,
) -> Delivery:
    """A live send's, through the dispatcher's workers, or a dry-run's."""
    batch_size = config.delivery.batch_size
    if client is None:
        return DryRunDelivery(records, batch_size)
    dispatcher = _dispatcher(console, config, client, ledger)
    return LiveDelivery(
        dispatcher, records, planner.identity, batch_size, progress.update, interrupts
    )


def _fanout(o: SendOptions, config: Config, report: Report) -> FanOut | None:
    """Worker processes that read local files, for a dry-run: they settle skipped events, so
    only where their rows are counted, not shown."""
    if not o.dry_run or (report.table and o.all_rows):
        return None
    return FanOut.for_run(
        o.jobs, config.campaigns_by_event(), bool(report.streams), key_variables(config),
        report.warn,
    )  # fmt: skip


@dataclasses.dataclass(frozen=True)
class _Ended:
    """How the reading and delivering ended."""

    interrupted: bool = False
    clean: bool = True  # every request had its answer
    failure: Exception | None = None  # an unexpected error stopped the run


def _run(
    console: Console,
    o: SendOptions,
    job: SendJob,
    sources: Inputs,
    progress: SendProgress | _NoProgress,
    streams: list[Output],
    ending: _Ending,
) -> _Ended:
    """Reads and delivers; SIGTERM or SIGHUP meanwhile ends the run as Ctrl-C does (see
    ``Interrupts``). What was sent is settled before anything else, however the run ends."""

    def on_source(source):
        log.debug("reading %s", source.name)

    ended = _Ended()
    with job.interrupts.noted(), progress:
        try:
            job.read(sources, on_source)
            if job.halted_by is None:
                job.finish()
                job.interrupts.check()  # one that came as the last answers did
            else:
                ended = _Ended(clean=job.stop(o.grace))
        except KeyboardInterrupt:
            clean = o.dry_run or _stop_after_interrupt(console, job, o.grace, streams, ending)
            ended = _Ended(interrupted=True, clean=clean)
        except Exception as exc:
            clean = _stop_after_failure(console, job, o.grace, streams, ending)
            ended = _Ended(clean=clean, failure=exc)
    ending.interrupted = ended.interrupted
    return ended


def _conclude(
    console: Console,
    o: SendOptions,
    checked: _Checked,
    job: SendJob,
    ledger: Ledger | None,
    outputs: _Outputs,
    ended: _Ended,
) -> int:
    """The summary and what to do next, on stderr; the exit code."""
    config, sources, ledger_where = checked.config, checked.sources, checked.ledger_where
    report = job.report
    interrupted, failure = ended.interrupted, ended.failure
    job.stats.pruned_folders = sources.pruned_folders
    try:
        if job.read_complete and not o.quiet:
            warn_of_empty_inputs(console, sources, job.stats)
        report.flush()
        if not o.quiet:
            render.summary(console, report, job.stats, interrupted, job.read_complete)
        conflicts = type_conflicts(job.matcher.property_types)
        if conflicts and not o.quiet:
            console.print(Text(visible(conflicts), style="yellow"), soft_wrap=True)
        _say_why_it_stopped(console, report, job, failure, checked.base_url, ledger_where)
        if not (o.quiet or o.dry_run):
            _say_what_next(console, report, job, interrupted, ledger_where)
        if o.dry_run and not o.quiet and job.requests:
            console.print(Text(f"A live send would take {_requests_line(job.requests, config)}"))
        dead_letters = outputs.dead_letters
        if dead_letters is not None and dead_letters.count and not o.quiet:
            console.print(Text(f"{dead_letters.count:,} events written to {o.failed_path}"))
        if dead_letters is not None and dead_letters.lost and outputs.failed_file is not None:
            why = outputs.failed_file.describe_error()
            console.print(
                Text(visible(f"warning: {dead_letters.lost:,} more failed events could not be "
                             f"written to {o.failed_path} ({why})"), style="yellow"),
                soft_wrap=True,
            )  # fmt: skip
        _finish_replaced(console, outputs.failed_file, job.replaced_input_settled)
    except OSError:  # stderr itself is gone: the exit code still tells
        pass
    code = _exit_code(report, job, interrupted, failure)
    if job.delivery.unauthorized:
        console.print(
            Text("retently: Retently refused the API key (401/403): nothing more was sent. "
                 "Check the key."),
            soft_wrap=True,
        )  # fmt: skip
    lost = ledger.verify() if ledger is not None else None
    if lost is not None:  # the ledger vanished under the run: it stopped sending
        code = EXIT_USAGE
        console.print(Text(visible(f"retently: {lost}")), soft_wrap=True)
    return code


def _make_plan(
    console,
    config,
    matcher: Matcher,
    inputs: Inputs,
    planner: Planner,
    fanout: FanOut | None,
    interrupts: Interrupts,
) -> Plan:
    console.print(Text("planning: reading the input once before sending anything", style="dim"))
    counting = Report(None, table=False, quiet=True)
    plan = make_plan(
        matcher, planner, inputs, config.delivery.batch_size, counting, fanout, interrupts
    )
    interrupts.check()  # one that came after the last event
    return plan


def _requests_line(requests: int, config: Config) -> str:
    return render.requests_line(requests, config.delivery.batch_size, config.delivery.rate_limit)


def _show_plan(console, plan: Plan, config, base_url, ledger, ledger_where, ledger_new):
    """The plan, drawn by ``render.plan`` from what the ledger holds (read here)."""
    held = None
    if ledger is not None and not ledger_new:
        states = ledger.states()
        held = (states.get(SENT, 0), states.get(UNCERTAIN, 0) + states.get(PENDING, 0))
    where = ledger_where if ledger is not None else None
    render.plan(console, plan, config.delivery, base_url, where, held)


def _confirm(plan: Plan, interrupts: Interrupts) -> bool:
    """Anything but yes sends nothing; Ctrl-C (or SIGTERM, SIGHUP) at the question is an
    interrupt (exit 130), at once."""
    click.echo(f"Send {plan.total:,} surveys? [y/N] ", err=True, nl=False)
    with interrupts.at_once():
        answer = sys.stdin.readline()
    if not answer:  # Ctrl-D
        click.echo(err=True)
    return answer.strip().lower() in ("y", "yes")


def _say_what_next(console, report: Report, job: SendJob, interrupted: bool, ledger_where):
    """The next command, when a live send leaves something to do."""
    not_sent = report.counts.reasons[(FAILED, NOT_SENT)]
    if interrupted:
        unread = "" if job.read_complete else " (and the rest of the input not yet read)"
        console.print(
            Text(f"retently: interrupted: {_resume(report, ledger_where)}; {not_sent:,} "
                 f"surveys not yet sent{unread}"),
            soft_wrap=True,
        )  # fmt: skip
    uncertain = report.counts.outcomes[UNCERTAIN]
    if not uncertain:
        return
    head = (
        f"retently: {uncertain:,} survey{'s are' if uncertain != 1 else ' is'} uncertain: "
        f"{'they' if uncertain != 1 else 'it'} may have been delivered."
    )
    if ledger_where is None:
        lines = [f"{head} Check in Retently before sending again (there is no ledger)."]
    else:
        where = f" --ledger {shlex.quote(str(ledger_where))}"
        lines = [
            f"{head} Check in Retently, then settle them:",
            f"  retently ledger resolve --sent --all-uncertain{where}      (they arrived)",
            f"  retently ledger resolve --not-sent --all-uncertain{where}  (the next run "
            "sends them)",
            "or resend them all, at the risk of a second survey: re-run the same command with "
            "--retry-uncertain",
        ]
    console.print(Text("\n".join(visible(line) for line in lines)), soft_wrap=True)


def _new_files(paths) -> tuple[str, ...]:
    """The output files this run creates: a walk leaves them out. One that exists already is
    an input where a walk reaches it, refused or replaced as such."""
    return tuple(p for p in paths if p and p != "-" and not os.path.lexists(p))


def _open_output(console, path, stdout: Output, on_failure) -> Output | None:
    if path is None:
        return None
    if path == "-":
        return stdout
    try:
        return Output(path, open(path, "wb", buffering=0), on_failure)  # see Output
    except OSError as exc:
        raise UsageFailure([f"{path}: cannot write it ({exc.strerror})"]) from None


def _stop_after_failure(console: Console, job: SendJob, grace: float, streams, ending) -> bool:
    """An unexpected error: stop reading, and still give requests in flight their answer."""
    return _stop_within_grace(console, job, grace, streams, ending, "interrupted: quitting now")


def _stop_within_grace(
    console: Console, job: SendJob, grace: float, streams, ending: _Ending, on_ctrl_c: str
) -> bool:
    """``job.stop``; a Ctrl-C meanwhile leaves at once (the ledger stays consistent)."""
    try:
        return job.stop(grace)
    except KeyboardInterrupt:
        console.print(Text(on_ctrl_c))
        _flush_all(streams)
        with contextlib.suppress(OSError):  # (a full disk: it leaves at once all the same)
            _finish_replaced(console, ending.failed_file, input_read=False)
        ending.interrupted = True
        ending.write(EXIT_INTERRUPTED)
        os._exit(EXIT_INTERRUPTED)
    except Exception:
        return False


def _finish_replaced(console: Console, failed_file: Output | None, input_read: bool) -> None:
    """A --failed file that is also an input: moved over it, or kept beside it, and said so
    (otherwise this run's failed events stay in a hidden temporary file)."""
    if isinstance(failed_file, ReplacingOutput):
        kept = failed_file.finish(input_read=input_read)
        if kept:
            console.print(Text(f"warning: {kept}", style="yellow"), soft_wrap=True)


_LEDGER_ERRORS = (sqlite3.Error, LedgerLost, LedgerInvalid)


def _say_why_it_stopped(console, report, job, failure, base_url, ledger_where) -> None:
    delivery = job.delivery
    reason = None
    if isinstance(failure, _LEDGER_ERRORS):
        reason = f"ledger {ledger_where}: {failure}"
    elif failure is not None:
        reason = f"internal error ({type(failure).__name__}: {failure})"
        log.debug("", exc_info=failure)  # -vv: its traceback
    elif delivery.ledger_error is not None:
        reason = f"ledger {ledger_where} cannot be written ({delivery.ledger_error})"
    elif job.halted_by is not None:
        reason = job.halted_by
    elif delivery.unavailable is not None:
        reason = f"the API at {base_url} is unavailable: {delivery.unavailable}"
    if reason is None:
        return
    not_sent = report.counts.reasons[(FAILED, NOT_SENT)]
    then = f"; {not_sent:,} surveys not sent" if not_sent else ""
    if job.read_complete and not not_sent:  # everything was read and settled all the same
        line = f"retently: {reason}"
    elif delivery.unavailable is not None:
        unread = "" if job.read_complete else " (and the rest of the input not yet read)"
        line = (
            f"retently: {reason}; stopped sending{then}{unread}. "
            f"{_sentence(_resume(report, ledger_where, ' once it is back'))}"
        )
    elif failure is not None and not isinstance(failure, _LEDGER_ERRORS):
        line = f"retently: {reason}; the run stopped{then} (-vv shows where)"
    else:
        line = (
            f"retently: {reason}; stopped reading{then}. {_sentence(_resume(report, ledger_where))}"
        )
    console.print(Text(visible(line)), soft_wrap=True)


def _resume(report: Report, ledger_where, when: str = "") -> str:
    """How to go on after a run that stopped early. Without a ledger, re-running the same
    command would survey again whom this run surveyed (or may have): it says so instead."""
    reached = report.sent + report.counts.outcomes[UNCERTAIN]
    if ledger_where is not None or not reached:
        return f"re-run the same command{when} to resume"
    return (
        f"there is no ledger (--no-ledger), so re-running the same command would survey again "
        f"the {reached:,} this run surveyed or may have: send only what is left"
    )


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


def _exit_code(report, job, interrupted, failure) -> int:
    delivery = job.delivery
    if interrupted:
        return EXIT_INTERRUPTED
    if delivery.unauthorized:
        return EXIT_UNAUTHORIZED
    if delivery.unavailable is not None:
        return EXIT_UNAVAILABLE
    if isinstance(failure, _LEDGER_ERRORS):
        return EXIT_USAGE
    if delivery.ledger_error is not None:
        return EXIT_USAGE  # nothing more could be recorded, so the run stopped sending
    if failure is not None or job.halted_by is not None:
        return max(report.exit_code(), EXIT_PROBLEMS)
    return report.exit_code()


def _quiet_stdout() -> None:
    """The reader of stdout went away: point it at /dev/null so that the interpreter's own
    flush at exit does not print a BrokenPipeError."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _ledger(console: Console, o: SendOptions, base_url: str) -> Ledger | None:
    path, dry_run = o.ledger_path, o.dry_run
    if o.no_ledger:
        log.info("ledger: none (--no-ledger)")
        return None
    where = Path(path) if path else default_ledger_path(base_url)
    try:
        ledger = Ledger.open_for_dry_run(where) if dry_run else Ledger(where)
    except LedgerBusy as exc:
        raise UsageFailure([f"ledger {where}: {exc}"]) from None
    except LedgerInvalid as exc:
        raise UsageFailure([str(exc)]) from None
    except (OSError, sqlite3.OperationalError) as exc:
        raise UsageFailure([f"ledger {where}: cannot open it ({exc})"]) from None
    except sqlite3.DatabaseError as exc:  # damage found beyond the ledger's own checks
        raise UsageFailure(
            [f"ledger {where} is damaged ({exc}): not a retently ledger any more"]
        ) from None
    except sqlite3.Error as exc:
        raise UsageFailure([f"ledger {where}: cannot open it ({exc})"]) from None
    if ledger is not None and ledger.without_wal:
        console.print(
            Text(f"ledger {where}: its folder is read-only, so it is read without its latest "
                 "records (in its -wal file); the dry-run may show some as not yet sent"),
            soft_wrap=True,
        )  # fmt: skip
    if dry_run:  # a live send names it anyway (tell_where)
        state = "" if ledger is not None else " (none yet: nothing recorded)"
        log.info("ledger: %s%s", where, state)
    return ledger


def _dispatcher(console, config, client, ledger) -> Dispatcher:
    delivery = config.delivery
    sender = Sender(
        client,
        RateLimiter(delivery.rate_limit),
        RetryPolicy(max_attempts=delivery.max_attempts),
        threading.Event(),
        ledger=ledger,
        warn=lambda line: console.print(Text(line, style="yellow"), soft_wrap=True),
    )
    return Dispatcher(sender, delivery.concurrency)


class _NoProgress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def update(self):
        return None


def _progress(console, o: SendOptions, stats, report, sources: Inputs):
    # --color always colours a pipe, no more
    if o.dry_run or o.quiet or o.no_progress or not console.file.isatty():
        return _NoProgress()

    def total() -> int | None:
        """The bytes listed so far: folders are listed as the run reaches them."""
        return None if sources.reads_stdin or sources.unsized else sources.listed_bytes

    return SendProgress(console, stats, report, total)


def _stop_after_interrupt(console: Console, job: SendJob, grace: float, streams, ending) -> bool:
    """First Ctrl-C: stop reading, give requests in flight ``grace`` seconds, account for
    every survey read. A second Ctrl-C leaves at once: the ledger stays consistent (SQLite),
    and what was in flight is reported as uncertain by the next run."""
    console.print(
        Text(
            f"interrupted: finishing requests in flight, at most {grace:g} s (Ctrl-C again to quit)"
        )
    )
    return _stop_within_grace(
        console, job, grace, streams, ending, "interrupted again: quitting now"
    )


def _flush_all(streams) -> None:
    for stream in streams:
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    sys.stderr.flush()
