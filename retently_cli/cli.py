"""The command line: click commands only; the work is done in the library modules."""

from __future__ import annotations

import json
import os
import sys
import threading

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from retently_cli import __version__
from retently_cli.account import campaigns_from, check_campaigns
from retently_cli.apikey import literal_key_warning, resolve_api_key
from retently_cli.client import RetentlyClient
from retently_cli.config import (
    BASE_URL_ENV,
    Config,
    ConfigError,
    check_base_url,
    find_config,
    load_config,
)
from retently_cli.delivery import Dispatcher, RateLimiter, RetryPolicy, Sender, call_with_retries
from retently_cli.matching import Matcher
from retently_cli.progress import SendProgress
from retently_cli.readers import STDIN_NAME, expand_paths
from retently_cli.report import (
    EXIT_INTERRUPTED,
    EXIT_PROBLEMS,
    EXIT_UNAUTHORIZED,
    EXIT_USAGE,
    Report,
)
from retently_cli.run import SendJob

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

EXIT_CODES = """\b
Exit codes:
  0    all good
  1    the run finished, but some input was malformed or some events failed
  2    usage or config error (nothing was sent)
  3    Retently refused the API key (401/403): the run stopped, nothing more was sent
  130  interrupted (Ctrl-C)"""


def _stderr_console() -> Console:
    width = None if sys.stderr.isatty() else int(os.environ.get("COLUMNS") or 160)
    return Console(stderr=True, highlight=False, width=width)


def _fail(console: Console, lines: list[str], code: int = EXIT_USAGE):
    for line in lines:
        console.print(
            Text(f"retently: {line}"), style="red" if console.is_terminal else "", soft_wrap=True
        )
    sys.exit(code)


def _load(console: Console, config_path: str | None, verbose: int) -> Config:
    path = find_config(config_path)
    if verbose:
        origin = (
            "--config"
            if config_path
            else "$RETENTLY_CONFIG"
            if os.environ.get("RETENTLY_CONFIG")
            else "default"
        )
        console.print(Text(f"config: {path} ({origin})", style="dim"))
    try:
        return load_config(path)
    except ConfigError as exc:
        if not path.exists() and not config_path and not os.environ.get("RETENTLY_CONFIG"):
            _fail(console, [*exc.problems, "give one with --config/-c or $RETENTLY_CONFIG"])
        _fail(console, exc.problems)


def config_option(f):
    return click.option(
        "-c",
        "--config",
        "config_path",
        metavar="PATH",
        help="Config file [default: $RETENTLY_CONFIG, else ./retently.yaml].",
    )(f)


def verbosity_options(f):
    f = click.option("-q", "--quiet", is_flag=True, help="Print only errors on stderr.")(f)
    return click.option(
        "-v", "--verbose", count=True, help="Say more on stderr (-v: config and inputs)."
    )(f)


@click.group(context_settings=CONTEXT, epilog=EXIT_CODES)
@click.version_option(__version__, "--version", prog_name="retently")
def cli():
    """Replay Segment Track events into Retently transactional surveys.

    \b
    Examples:
      retently check -c retently.yaml
      retently send --dry-run -c retently.yaml segment-logs/
      zcat export.gz | retently send -n --output ndjson -c retently.yaml -
    """


@cli.command(
    epilog="""\b
Examples:
  retently send --dry-run -c config.example.yaml examples/
  retently send -n --output ndjson examples/batch.json | jq -c 'select(.outcome=="dry_run")'
  aws s3 cp s3://bucket/segment-logs/SRC/1764201600000/x.gz - | retently send -n -
  RETENTLY_API_KEY=... retently send -c retently.yaml segment-logs/

"""
    + EXIT_CODES
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
    "--all-rows", is_flag=True, help="Show a table row for every event, not only matched ones."
)
@click.option(
    "--api-key-file",
    metavar="PATH",
    help="Read the API key from this file (- for stdin, when the events come from files). "
    "Default: api_key in the config, else $RETENTLY_API_KEY.",
)
@verbosity_options
@click.argument("paths", nargs=-1, type=click.Path(exists=True, allow_dash=True))
def send(config_path, dry_run, output, all_rows, api_key_file, verbose, quiet, paths):
    """Survey the customers that Segment Track events in PATHS map to.

    PATHS are files or folders (walked recursively, in name order) of Segment messages: NDJSON,
    gzipped S3 exports, a JSON object, array or Tracking API batch; the format is read from the
    bytes. No PATH, or -, reads stdin.

    Surveys for the same campaign go out in batches of up to batch_size subscribers, at most
    rate_limit requests a minute; failures are retried with backoff (see the README).
    """
    console = _stderr_console()
    config = _load(console, config_path, verbose)
    stdout = sys.stdout.buffer if output == "ndjson" else None
    report = Report(console, stdout, output=output, all_rows=all_rows, quiet=quiet)
    sources = expand_paths(paths, sys.stdin.buffer)
    if verbose:
        console.print(Text(f"inputs: {len(sources)} source(s)", style="dim"))
    dispatcher = None
    if not dry_run:
        dispatcher = _dispatcher(console, config, api_key_file, sources, verbose, quiet)
    job = SendJob(Matcher(config), report, dispatcher, config.delivery.batch_size)

    def on_source(source):
        if verbose > 1:
            console.print(Text(f"reading {source.name}", style="dim"))

    interrupted = False
    with _progress(console, job, report, sources, dry_run, quiet) as progress:
        job._on_progress = progress.update
        try:
            job.read(sources, on_source)
            job.finish()
        except KeyboardInterrupt:
            interrupted = True
            _stop_after_interrupt(console, job)
        except BrokenPipeError:
            _quiet_broken_pipe()
    try:
        report.summary(job.stats, interrupted)
    except BrokenPipeError:
        _quiet_broken_pipe()
    if dispatcher is not None and dispatcher.sender.unauthorized:
        _fail(
            console,
            ["Retently refused the API key (401/403): nothing more was sent. Check the key."],
            EXIT_UNAUTHORIZED,
        )
    sys.exit(EXIT_INTERRUPTED if interrupted else report.exit_code())


def _client(console, config, api_key_file, sources=(), verbose=0, quiet=False):
    """An API client with the key and base URL, all checked before anything is read."""
    base_url = config.delivery.base_url
    try:
        events_from_stdin = any(s.name == STDIN_NAME for s in sources)
        key, origin = resolve_api_key(config, api_key_file, sys.stdin.buffer, events_from_stdin)
        if os.environ.get(BASE_URL_ENV):
            try:
                base_url = check_base_url(os.environ[BASE_URL_ENV])
            except ValueError as exc:
                raise ConfigError([f"${BASE_URL_ENV}: {exc}"]) from None
    except ConfigError as exc:
        _fail(console, exc.problems)
    warning = literal_key_warning(config)
    if warning and not quiet:
        console.print(Text(warning, style="yellow"), soft_wrap=True)
    if verbose:
        console.print(Text(f"API key from {origin}; API at {base_url}", style="dim"))
    return RetentlyClient(base_url, key, timeout=config.delivery.timeout)


def _dispatcher(console, config, api_key_file, sources, verbose, quiet) -> Dispatcher:
    delivery = config.delivery
    client = _client(console, config, api_key_file, sources, verbose, quiet)

    def log(line: str) -> None:
        console.print(Text(line, style="dim"), soft_wrap=True)

    sender = Sender(
        client,
        RateLimiter(delivery.rate_limit),
        RetryPolicy(max_attempts=delivery.max_attempts),
        threading.Event(),
        log=log if verbose else None,
        log_bodies=verbose > 1,
    )
    return Dispatcher(sender, delivery.concurrency)


class _NoProgress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def update(self):
        return None


def _progress(console, job, report, sources, dry_run, quiet):
    if dry_run or quiet or not console.is_terminal:
        return _NoProgress()
    sizes = [s.size for s in sources]
    total = sum(sizes) if all(size is not None for size in sizes) else None
    return SendProgress(console, job.stats, report, total)


def _stop_after_interrupt(console: Console, job: SendJob) -> None:
    """Ctrl-C: stop reading; give requests already queued a short grace to finish."""
    if job.dispatcher is None:
        return
    console.print(Text("interrupted: finishing requests in flight (Ctrl-C again to quit)"))
    job.dispatcher.sender.stop.set()
    try:
        job.finish()
    except KeyboardInterrupt:
        pass


def _quiet_broken_pipe():
    """The reader of stdout went away (``| head``): stop without a traceback."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(1)


@cli.command(
    epilog="""\b
Examples:
  retently check -c config.example.yaml
  RETENTLY_CONFIG=prod.yaml retently check
  RETENTLY_API_KEY=... retently check --online -c retently.yaml

"""
    + EXIT_CODES
)
@config_option
@click.option(
    "--online",
    is_flag=True,
    help="Also ask Retently: is the key accepted, does every mapped campaign exist and can it "
    "send transactional email surveys.",
)
@click.option("--api-key-file", metavar="PATH", help="Read the API key from this file.")
@verbosity_options
def check(config_path, online, api_key_file, verbose, quiet):
    """Validate the config offline and show the mapping as understood.

    With --online, also check the key and the campaigns against the account: exit 1 when a
    mapped campaign does not exist, 3 when the key is refused.
    """
    console = _stderr_console()
    config = _load(console, config_path, verbose)
    code = _check_online(console, config, api_key_file, verbose) if online else 0
    if quiet:
        sys.exit(code)
    out = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    out.print(Text(f"{config.path}: OK", style="green"))
    out.print(Text("campaign -> events", style="bold"))
    campaigns = Table(box=None, pad_edge=False)
    campaigns.add_column("campaign", style="bold")
    campaigns.add_column("delay")
    campaigns.add_column("events")
    for campaign in config.campaigns:
        delay = "campaign's own" if campaign.delay is None else f"{campaign.delay} d"
        campaigns.add_row(
            Text(campaign.id), delay, Text(", ".join(repr(e) for e in campaign.events))
        )
    out.print(campaigns)
    out.print(Text("event -> campaigns", style="bold"))
    events = Table(box=None, pad_edge=False)
    events.add_column("event", style="bold")
    events.add_column("campaigns")
    for name, mapped in sorted(config.campaigns_by_event().items()):
        events.add_row(Text(repr(name)), Text(", ".join(c.id for c in mapped)))
    out.print(events)
    paths = ", ".join(config.email_paths)
    out.print(Text(f"email looked up at: {paths}"))
    if config.exclude:
        out.print(Text(f"properties excluded: {', '.join(sorted(config.exclude))}"))
    if config.types:
        forced = ", ".join(f"{k}: {v}" for k, v in sorted(config.types.items()))
        out.print(Text(f"property types forced: {forced}"))
    sys.exit(code)


def _check_online(console: Console, config: Config, api_key_file, verbose) -> int:
    with _client(console, config, api_key_file, verbose=verbose) as client:
        policy = RetryPolicy(max_attempts=3)
        ping = call_with_retries(client.ping, policy)
        _refused_key(console, ping)
        if ping.status != 200:
            _fail(console, [f"cannot reach Retently: {_answer_text(ping)}"], EXIT_PROBLEMS)
        answer = call_with_retries(client.campaigns, policy)
        _refused_key(console, answer)
        campaigns = campaigns_from(answer)
        if campaigns is None:
            _fail(console, [f"cannot list campaigns: {_answer_text(answer)}"], EXIT_PROBLEMS)
    code = 0
    for result in check_campaigns(config, campaigns):
        for problem in result.problems:
            console.print(Text(f"retently: campaigns.{result.campaign}: {problem}"), soft_wrap=True)
            code = EXIT_PROBLEMS
        for warning in result.warnings:
            console.print(
                Text(f"warning: campaigns.{result.campaign}: {warning}", style="yellow"),
                soft_wrap=True,
            )
    if code == 0:
        console.print(Text(f"online: key accepted, {len(config.campaigns)} campaigns found"))
    return code


def _refused_key(console: Console, answer) -> None:
    if answer.status in (401, 403):
        _fail(
            console, ["Retently refused the API key (401/403). Check the key."], EXIT_UNAUTHORIZED
        )


def _answer_text(answer) -> str:
    if answer.status is None:
        return str(answer.error)
    message = answer.body.get("message") if isinstance(answer.body, dict) else None
    return f"HTTP {answer.status}" + (f": {message}" if message else "")


@cli.command(
    epilog="""\b
Examples:
  RETENTLY_API_KEY=... retently campaigns
  retently campaigns --api-key-file ~/.retently-key --output json | jq -r '.[].id'

"""
    + EXIT_CODES
)
@config_option
@click.option(
    "-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@click.option("--api-key-file", metavar="PATH", help="Read the API key from this file.")
@verbosity_options
def campaigns(config_path, output, api_key_file, verbose, quiet):
    """List the account's campaigns, with the ids to map in the config.

    The config is optional here: without one, the key comes from $RETENTLY_API_KEY or
    --api-key-file.
    """
    console = _stderr_console()
    path = find_config(config_path)
    config = _load(console, config_path, verbose) if config_path or path.exists() else Config(())
    with _client(console, config, api_key_file, verbose=verbose, quiet=quiet) as client:
        answer = call_with_retries(client.campaigns, RetryPolicy(max_attempts=3))
    _refused_key(console, answer)
    found = campaigns_from(answer)
    if found is None:
        _fail(console, [f"cannot list campaigns: {_answer_text(answer)}"], EXIT_PROBLEMS)
    if output == "json":
        sys.stdout.write(json.dumps(found, indent=2) + "\n")
        return
    out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("id", "name", "metric", "type", "channel", "active"):
        table.add_column(column)
    mapped = {c.id for c in config.campaigns}
    for c in found:
        table.add_row(
            Text(str(c.get("id")), style="bold" if str(c.get("id")) in mapped else ""),
            Text(str(c.get("name", ""))),
            Text(str(c.get("metric", ""))),
            Text(str(c.get("type", ""))),
            Text(str(c.get("channel", ""))),
            "yes" if c.get("isActive") else "no",
        )
    out.print(table)


def main():
    cli(prog_name="retently")
