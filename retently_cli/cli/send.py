"""``send``: the one command that reads events and surveys customers, and its wiring."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shlex
import signal
import sqlite3
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import click
from rich.console import Console
from rich.text import Text

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
from retently_cli.outputs import Output, ReplacingOutput, check_output_paths
from retently_cli.planning import Filters, Planner
from retently_cli.progress import SendProgress
from retently_cli.pruning import Window
from retently_cli.report import (
    EXIT_INTERRUPTED,
    EXIT_PROBLEMS,
    EXIT_UNAUTHORIZED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    FAILED,
    UNCERTAIN,
    Report,
    requests_line,
)
from retently_cli.run import Plan, SendJob, make_plan
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
        if job is not None and job.dispatcher is not None:
            sender = job.dispatcher.sender
            record["api_unavailable"] = sender.unavailable
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


_ending = _Ending()


def _with_summary_json(command):
    """Gives ``send`` its ``_Ending`` and writes it on every way out of the command."""

    @functools.wraps(command)
    def wrapper(*args, summary_json=None, **kwargs):
        global _ending
        _ending = ending = _Ending(summary_json)
        try:
            return command(*args, **kwargs)
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

    return wrapper


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
@_with_summary_json
def send(
    config_path,
    dry_run,
    output,
    all_rows,
    max_rows,
    api_key_file,
    ledger_path,
    no_ledger,
    retry_uncertain,
    failed_path,
    report_path,
    since,
    until,
    events,
    campaigns,
    limit,
    grace,
    max_lateness,
    includes,
    excludes,
    max_line_bytes,
    jobs,
    no_progress,
    verbose,
    quiet,
    paths,
    yes,
):
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
    console = stderr_console()
    ending = _ending
    ending.dry_run = dry_run
    if ending.path == "-" and (output == "ndjson" or "-" in (report_path, failed_path)):
        ending.path = None
        raise UsageFailure(["--summary-json -: stdout already carries the records; give a FILE"])
    config = load_or_exit(console, config_path, quiet)
    refuse_unknown_filters(config, campaigns, events)
    refuse_placeholders(console, config, warn_only=dry_run, quiet=quiet)
    # --summary-json last: a clash with another output is then named as its own.
    outputs = {"--report": report_path, "--failed": failed_path, "--summary-json": ending.path}
    selection = Selection(
        includes, excludes, _new_files(outputs.values()), Window(since, until, max_lateness)
    )
    sources = open_inputs(console, paths, max_line_bytes, selection)
    if config.from_identify and (problem := rereading_problem(sources)) is not None:
        raise UsageFailure([problem])  # before the ledger or anything else is opened
    log.info("inputs: %s", ", ".join(sources.paths))
    base_url = base_url_in_use(config)
    ledger_where = None if no_ledger else Path(ledger_path or default_ledger_path(base_url))
    paths_check = check_output_paths(
        outputs,
        sources.local_files()
        + sources.inputs_among(outputs.values())
        + (["-"] if sources.reads_stdin else []),
        sources.local_folders(),
        ledger_where,
    )
    if paths_check.problems:
        if any(problem.startswith("--summary-json ") for problem in paths_check.problems):
            ending.path = None  # written at the exit all the same, it would destroy that file
        raise UsageFailure(paths_check.problems)
    for warning in paths_check.warnings:
        console.print(Text(f"warning: {visible(warning)}", style="yellow"), soft_wrap=True)
    dispatcher = None
    if not dry_run:
        dispatcher = _dispatcher(console, config, api_key_file, sources)
    ledger_new = ledger_where is not None and not ledger_where.exists()
    ledger = _ledger(console, ledger_path, no_ledger, base_url, dry_run)
    # A plan reads the inputs once before the send reads them again: a pipe cannot be.
    unplanned = sources.reads_stdin or rereading_problem(sources) is not None
    if ledger is not None and not (dry_run or quiet):
        # A plan, shown to all but unplanned runs, names the ledger itself.
        tell_where(console, ledger.path, ledger_new, sources, name_it=unplanned)
    identities = identities_for_run([config], paths, max_line_bytes, selection)
    if dispatcher is not None:
        dispatcher.sender.ledger = ledger
        asking = not yes and sys.stdin.isatty() and sys.stderr.isatty()
        if unplanned:
            if not quiet:
                what = "stdin" if sources.reads_stdin else "a pipe or device, not a file,"
                console.print(Text(f"events from {what} cannot be planned: sending as they come"))
        elif asking or not quiet:
            # Its own inputs: a selection counts the folders it prunes, and what a walk passes
            # over is said once, by the run itself.
            plan_selection = dataclasses.replace(selection, pruned_folders=0)
            plan_inputs = open_inputs(console, paths, max_line_bytes, plan_selection)
            plan_inputs.warn = lambda text: None
            filters = Filters(since, until, frozenset(events), frozenset(campaigns), limit)
            planner = Planner(filters, ledger, retry_uncertain)
            # Its own matcher: a matcher remembers the messageIds it saw.
            matcher = Matcher(config, identities)
            fanout = FanOut.for_run(jobs, config.campaigns_by_event(), records=False)
            ending.plan = _make_plan(console, config, matcher, plan_inputs, planner, fanout)
            where = (base_url, ledger, ledger_where, ledger_new)
            _show_plan(console, ending.plan, config, *where)
            if asking and ending.plan.total and not _confirm(ending.plan):
                console.print(Text("retently: nothing was sent"))
                sys.exit(EXIT_PROBLEMS)

    def output_failed(out: Output) -> None:
        job.halt(out.describe_error())

    stdout = Output("stdout", sys.stdout.buffer, output_failed)
    streams = [stdout] if output == "ndjson" else []
    report_file = _open_output(console, report_path, stdout, output_failed)
    if report_file is not None and report_file not in streams:
        streams.append(report_file)
    report = Report(
        console,
        streams,
        table=output == "table",
        all_rows=all_rows,
        quiet=quiet,
        max_rows=max_rows,
    )
    failed_file: Output | None
    if "--failed" in paths_check.replaced:
        failed_file = ReplacingOutput(Path(failed_path), output_failed)
    else:
        failed_file = _open_output(console, failed_path, stdout, output_failed)
    dead_letters = DeadLetters(failed_file) if failed_file is not None else None
    planner = Planner(
        Filters(since, until, frozenset(events), frozenset(campaigns), limit),
        ledger,
        retry_uncertain,
    )
    matcher = Matcher(config, identities)
    # Workers settle skipped events only where their rows are counted, not shown.
    fanout = None
    if dispatcher is None and not (report.table and all_rows):
        fanout = FanOut.for_run(jobs, config.campaigns_by_event(), records=bool(streams))
        if fanout is not None:
            fanout.warn = report.warn
    job = SendJob(
        matcher, report, dispatcher, config.delivery.batch_size, planner, dead_letters,
        fanout=fanout,
    )  # fmt: skip
    cast(TolerantStream, console.file).on_failure = lambda: job.halt("stderr was closed")
    ending.report, ending.job = report, job
    if isinstance(failed_file, ReplacingOutput):
        job.replaced_path = failed_path

    def on_source(source):
        log.debug("reading %s", source.name)

    interrupted, clean, failure = False, True, None
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with _progress(console, job, report, sources, dry_run, quiet or no_progress) as progress:
            job.on_progress = progress.update
            try:
                job.read(sources, on_source)
                if job.halted_by is None:
                    job.finish()
                else:
                    clean = job.stop(grace)
            except KeyboardInterrupt:
                interrupted = True
                clean = _stop_after_interrupt(console, job, grace, streams)
            except Exception as exc:  # settle what was sent before anything else
                failure = exc
                clean = _stop_after_failure(console, job, grace, streams)
    finally:
        signal.signal(signal.SIGTERM, previous)
    ending.interrupted = interrupted
    job.stats.pruned_folders = sources.pruned_folders
    try:
        if job.read_complete and not quiet:
            warn_of_empty_inputs(console, sources, job.stats)
        report.summary(job.stats, interrupted, job.read_complete)
        conflicts = type_conflicts(job.matcher.property_types)
        if conflicts and not quiet:
            console.print(Text(visible(conflicts), style="yellow"), soft_wrap=True)
        _say_why_it_stopped(console, report, job, failure, ledger_where)
        if not quiet:
            _say_what_next(console, report, job, interrupted, ledger_where)
        if dry_run and not quiet and job.requests:
            console.print(Text(f"A live send would take {_requests_line(job.requests, config)}"))
        if dead_letters is not None and dead_letters.count and not quiet:
            console.print(Text(f"{dead_letters.count:,} events written to {failed_path}"))
        if isinstance(failed_file, ReplacingOutput):
            kept = failed_file.finish(input_read=job.read_complete and not job.kept_back)
            if kept:
                console.print(Text(f"warning: {kept}", style="yellow"), soft_wrap=True)
    except OSError:  # stderr itself is gone: the exit code still tells
        pass
    code = _exit_code(report, job, dispatcher, interrupted, failure)
    if dispatcher is not None and dispatcher.sender.unauthorized:
        console.print(
            Text("retently: Retently refused the API key (401/403): nothing more was sent. "
                 "Check the key."),
            soft_wrap=True,
        )  # fmt: skip
    lost = ledger.verify() if ledger is not None else None
    if lost is not None:  # the ledger vanished under the run: it stopped sending
        code = EXIT_USAGE
        console.print(Text(visible(f"retently: {lost}")), soft_wrap=True)
    if not clean:  # a worker is still waiting for an answer: do not wait for it at exit
        _flush_all(streams)
        ending.write(code)
        os._exit(code)
    for opened in (report_file, failed_file):
        if opened is not None and opened is not stdout:
            opened.close()
    stdout.flush()
    if ledger is not None:
        ledger.close()
    if stdout.error is not None:
        _quiet_stdout()
    sys.exit(code)


def _make_plan(
    console, config, matcher: Matcher, inputs: Inputs, planner: Planner, fanout: FanOut | None
) -> Plan:
    console.print(Text("planning: reading the input once before sending anything", style="dim"))
    counting = Report(console, table=False, quiet=True)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # ends the run as Ctrl-C does
    try:
        return make_plan(matcher, planner, inputs, config.delivery.batch_size, counting, fanout)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _requests_line(requests: int, config: Config) -> str:
    return requests_line(requests, config.delivery.batch_size, config.delivery.rate_limit)


def _show_plan(console, plan: Plan, config, base_url, ledger, ledger_where, ledger_new):
    """The plan of a live send, on stderr: what it will send, how, where and against what."""
    if plan.total:
        lines = [f"Plan: {plan.total:,} surveys in {_requests_line(plan.requests, config)}"]
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
    if ledger is None:
        lines.append("  ledger: none (--no-ledger): a re-run may survey again")
    elif ledger_new:
        lines.append(f"  ledger: {ledger_where} (new: no earlier run is known)")
    else:
        held = ledger.states()
        uncertain = held.get(UNCERTAIN, 0) + held.get(PENDING, 0)
        lines.append(
            f"  ledger: {ledger_where} (holding {held.get(SENT, 0):,} sent, "
            f"{uncertain:,} uncertain)"
        )
    console.print(Text("\n".join(visible(line) for line in lines)), soft_wrap=True)


def _confirm(plan: Plan) -> bool:
    """Anything but yes sends nothing; Ctrl-C at the question is an interrupt (exit 130)."""
    click.echo(f"Send {plan.total:,} surveys? [y/N] ", err=True, nl=False)
    answer = sys.stdin.readline()
    if not answer:  # Ctrl-D
        click.echo(err=True)
    return answer.strip().lower() in ("y", "yes")


def _say_what_next(console, report: Report, job: SendJob, interrupted: bool, ledger_where):
    """The next command, when the run leaves something to do."""
    if job.dispatcher is None:
        return
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


def _interrupt(signum, frame):
    """SIGTERM stops a run the way Ctrl-C does."""
    raise KeyboardInterrupt


def _open_output(console, path, stdout: Output, on_failure) -> Output | None:
    if path is None:
        return None
    if path == "-":
        return stdout
    try:
        return Output(path, open(path, "wb"), on_failure)
    except OSError as exc:
        raise UsageFailure([f"{path}: cannot write it ({exc.strerror})"]) from None


def _stop_after_failure(console: Console, job: SendJob, grace: float, streams) -> bool:
    """An unexpected error: stop reading, and still give requests in flight their answer."""
    return _stop_within_grace(console, job, grace, streams, "interrupted: quitting now")


def _stop_within_grace(console: Console, job: SendJob, grace: float, streams, on_ctrl_c) -> bool:
    """``job.stop``; a Ctrl-C meanwhile leaves at once (the ledger stays consistent)."""
    try:
        return job.stop(grace)
    except KeyboardInterrupt:
        console.print(Text(on_ctrl_c))
        _flush_all(streams)
        _ending.interrupted = True
        _ending.write(EXIT_INTERRUPTED)
        os._exit(EXIT_INTERRUPTED)
    except Exception:
        return False


_LEDGER_ERRORS = (sqlite3.Error, LedgerLost, LedgerInvalid)


def _say_why_it_stopped(console, report, job, failure, ledger_where) -> None:
    reason = None
    if isinstance(failure, _LEDGER_ERRORS):
        reason = f"ledger {ledger_where}: {failure}"
    elif failure is not None:
        reason = f"internal error ({type(failure).__name__}: {failure})"
        log.debug("", exc_info=failure)  # -vv: its traceback
    elif job.dispatcher is not None and job.dispatcher.sender.ledger_error is not None:
        reason = f"ledger {ledger_where} cannot be written ({job.dispatcher.sender.ledger_error})"
    elif job.halted_by is not None:
        reason = job.halted_by
    elif job.dispatcher is not None and job.dispatcher.sender.unavailable is not None:
        sender = job.dispatcher.sender
        reason = f"the API at {sender.client.base_url} is unavailable: {sender.unavailable}"
    if reason is None:
        return
    not_sent = report.counts.reasons[(FAILED, NOT_SENT)]
    then = f"; {not_sent:,} surveys not sent" if not_sent else ""
    if job.read_complete and not not_sent:  # everything was read and settled all the same
        line = f"retently: {reason}"
    elif job.dispatcher is not None and job.dispatcher.sender.unavailable is not None:
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


def _exit_code(report, job, dispatcher, interrupted, failure) -> int:
    if interrupted:
        return EXIT_INTERRUPTED
    if dispatcher is not None and dispatcher.sender.unauthorized:
        return EXIT_UNAUTHORIZED
    if dispatcher is not None and dispatcher.sender.unavailable is not None:
        return EXIT_UNAVAILABLE
    if isinstance(failure, _LEDGER_ERRORS):
        return EXIT_USAGE
    if dispatcher is not None and dispatcher.sender.ledger_error is not None:
        return EXIT_USAGE  # nothing more could be recorded, so the run stopped sending
    if failure is not None or job.halted_by is not None:
        return max(report.exit_code(), EXIT_PROBLEMS)
    return report.exit_code()


def _quiet_stdout() -> None:
    """The reader of stdout went away: point it at /dev/null so that the interpreter's own
    flush at exit does not print a BrokenPipeError."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _ledger(console, path, no_ledger, base_url, dry_run) -> Ledger | None:
    if no_ledger:
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


def _dispatcher(console, config, api_key_file, sources) -> Dispatcher:
    delivery = config.delivery
    client = api_client(config, api_key_file, sources.reads_stdin)
    sender = Sender(
        client,
        RateLimiter(delivery.rate_limit),
        RetryPolicy(max_attempts=delivery.max_attempts),
        threading.Event(),
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


def _progress(console, job, report, sources: Inputs, dry_run, quiet):
    if dry_run or quiet or not console.file.isatty():  # --color always colours a pipe, no more
        return _NoProgress()

    def total() -> int | None:
        """The bytes listed so far: folders are listed as the run reaches them."""
        return None if sources.reads_stdin or sources.unsized else sources.listed_bytes

    return SendProgress(console, job.stats, report, total)


def _stop_after_interrupt(console: Console, job: SendJob, grace: float, streams) -> bool:
    """First Ctrl-C: stop reading, give requests in flight ``grace`` seconds, account for
    every survey read. A second Ctrl-C leaves at once: the ledger stays consistent (SQLite),
    and what was in flight is reported as uncertain by the next run."""
    if job.dispatcher is None:
        return True
    console.print(
        Text(
            f"interrupted: finishing requests in flight, at most {grace:g} s (Ctrl-C again to quit)"
        )
    )
    return _stop_within_grace(console, job, grace, streams, "interrupted again: quitting now")


def _flush_all(streams) -> None:
    for stream in streams:
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    sys.stderr.flush()
