"""What every command shares: options, the stderr console, config loading, failing well,
and an API client built from the config, the key and the environment."""

from __future__ import annotations

import difflib
import logging
import os
import sys
from pathlib import Path
from typing import NoReturn

import click
from click.core import ParameterSource
from rich.console import Console
from rich.text import Text

from retently_cli.apikey import KEY_ENV, literal_key_warning, resolve_api_key
from retently_cli.client import RetentlyClient
from retently_cli.config import (
    BASE_URL_ENV,
    CONFIG_ENV,
    DEFAULT_CONFIG_NAME,
    Config,
    check_base_url,
    find_config,
    load_config,
)
from retently_cli.errors import AuthError, ConfigError, UsageFailure
from retently_cli.interrupts import Interrupts
from retently_cli.ledger import LEDGER_ENV
from retently_cli.logs import get_logger, logging_to
from retently_cli.outputs import Output, write_in_time
from retently_cli.pruning import DEFAULT_MAX_LATENESS_DAYS
from retently_cli.readers import MAX_LINE_BYTES, STDIN_NAME, ReadStats
from retently_cli.remote import RemoteError, is_url, local_path
from retently_cli.sources import Inputs, Selection
from retently_cli.starter import PLACEHOLDER, PLACEHOLDER_ID
from retently_cli.timeparse import parse_time
from retently_cli.visible import visible
from retently_cli.vocabulary import ExitCode

log = get_logger(__name__)

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

EXIT_CODES = """\b
Exit codes:
  0    all good
  1    some input was malformed, some events failed or are uncertain, or an output
       could not be written (the run stopped and settled what it had sent)
  2    usage or config error (nothing was sent), or the ledger failed during the run
  3    Retently refused the API key (401/403): the run stopped, nothing more was sent
  4    the API is unavailable (5 requests in a row failed after their retries): the run
       stopped sending; re-run the same command once it is back
  130  interrupted (Ctrl-C, SIGTERM or SIGHUP)"""


class TolerantStream:
    """stderr for the Rich console. When it can no longer be written (``2>&1 | head``, a
    closed terminal), writes are dropped and ``on_failure`` is called once, instead of an
    exception that would abandon the requests in flight."""

    def __init__(self, stream):
        self._stream = stream
        self.broken = False
        self.on_failure = lambda: None
        self.interrupts: Interrupts | None = None  # as ``outputs.Output``'s

    def write(self, text: str) -> int:
        if self.broken:
            return len(text)
        interrupts = self.interrupts
        if interrupts is None:
            try:
                return self._stream.write(text)
            except (OSError, ValueError):
                self._failed()
                return len(text)
        try:
            interrupts.moved()  # (see Interrupts)
            if not interrupts.count or not _has_fd(self._stream):
                return self._stream.write(text)
            encoding = getattr(self._stream, "encoding", None) or "utf-8"
            data = text.encode(encoding, getattr(self._stream, "errors", None) or "strict")
            write_in_time(self._stream, data, Output.STALLED_AFTER, interrupts)
        except (OSError, ValueError):
            self._failed()
        except KeyboardInterrupt:  # raised in a write that stopped moving (Interrupts)
            self._failed()
            interrupts.again()
        finally:
            interrupts.still()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self._stream.flush()
            except (OSError, ValueError):
                self._failed()

    def _failed(self) -> None:
        self.broken = True
        self.on_failure()

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _has_fd(stream) -> bool:
    try:
        stream.fileno()
    except (AttributeError, OSError, ValueError):  # a test's StringIO, an embedding caller's
        return False
    return True


# How wide a console draws when its stream is not a terminal (a terminal says its own width).
PIPED_WIDTH = 160  # stderr (unless $COLUMNS says otherwise), and the tables on stdout
MAPPING_WIDTH = 120  # check's mapping
LEDGER_WIDTH = 200  # ledger list: keys, emails and event names side by side

_CONSOLE = "retently.console"


def stderr_console() -> Console:
    """The command's console on stderr: one per command, so that log records, warnings and
    the progress line all go through the console that keeps them apart."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None and _CONSOLE in ctx.meta:
        return ctx.meta[_CONSOLE]
    piped_width = int(os.environ.get("COLUMNS") or PIPED_WIDTH)
    console = _console(TolerantStream(sys.stderr), piped_width)
    if ctx is not None:
        ctx.meta[_CONSOLE] = console
    return console


def stdout_console(width_when_piped: int = PIPED_WIDTH) -> Console:
    """For what a command prints on stdout (check's mapping, a preview's tables, the ledger's
    entries). Every console of the tool is made here or by ``stderr_console``."""
    return _console(sys.stdout, width_when_piped)


def _console(stream, width_when_piped: int) -> Console:
    """A console that colours only as ``--color`` says. Without colour it writes no escape
    code at all (Rich would still write bold and underline under ``NO_COLOR``)."""
    terminal = stream.isatty()
    width = None if terminal else width_when_piped
    choice = color_choice()
    if choice == "always":
        return Console(
            file=stream, highlight=False, width=width, force_terminal=True, no_color=False
        )
    colour = choice == "auto" and terminal and not os.environ.get("NO_COLOR")
    return Console(
        file=stream, highlight=False, width=width, color_system="auto" if colour else None
    )


_COLOR = "retently.color"


def color_choice() -> str:
    """The command's --color: auto, always or never."""
    ctx = click.get_current_context(silent=True)
    return ctx.meta.get(_COLOR, "auto") if ctx is not None else "auto"


def _remember_color(ctx: click.Context, param, value: str) -> str:
    ctx.meta[_COLOR] = value
    return value


# Options that make no sense together: each pair is refused when both are given. A name with
# "=value" counts only when the option has that value.
CONTRADICTIONS = (
    ("no_ledger", "ledger_path"),
    ("no_ledger", "retry_uncertain"),
    ("quiet", "verbose"),
    ("output=ndjson", "all_rows"),
    ("output=ndjson", "max_rows"),
)


class RetentlyCommand(click.Command):
    """A command that refuses contradictory options once click has parsed them all (a
    callback sees only the options parsed before its own), and that runs with -v/-vv as
    the level of the ``retently`` logger, shown on its stderr console."""

    def invoke(self, ctx: click.Context):
        with logging_to(stderr_console(), ctx.params.get("verbose") or 0):
            return super().invoke(ctx)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        rest = super().parse_args(ctx, args)
        if ctx.resilient_parsing:  # shell completion: complete, never refuse
            return rest
        for first, second in CONTRADICTIONS:
            if _given(ctx, first) and _given(ctx, second):
                raise click.UsageError(
                    f"{_option_name(ctx, first)} and {_option_name(ctx, second)} cannot be used "
                    "together",
                    ctx,
                )
        since, until = ctx.params.get("since"), ctx.params.get("until")
        if since is not None and until is not None and since >= until:
            raise click.UsageError(
                f"--since {_iso(since)} must be before --until {_iso(until)}: no event is "
                "in that window",
                ctx,
            )
        return rest


def _given(ctx: click.Context, spec: str) -> bool:
    name, _, value = spec.partition("=")
    if name not in ctx.params:
        return False
    # Only what was typed counts: $RETENTLY_LEDGER with --no-ledger means no ledger.
    if ctx.get_parameter_source(name) is not ParameterSource.COMMANDLINE:
        return False
    return not value or ctx.params[name] == value


def _option_name(ctx: click.Context, spec: str) -> str:
    name, _, value = spec.partition("=")
    for param in ctx.command.params:
        if param.name == name:
            option = max(param.opts, key=len)
            return f"{option} {value}" if value else option
    return name


def _iso(when) -> str:
    return when.isoformat().replace("+00:00", "Z")


def refuse_unknown_filters(config: Config, campaigns, events) -> None:
    """--campaign and --event must name what the config maps: a typo would otherwise filter
    every event out, and the run would look like one with nothing to do."""
    problems = []
    known = [c.id for c in config.campaigns]
    for cid in sorted(set(campaigns) - set(known)):
        problems.append(f"--campaign {cid}: the config maps no such campaign{_hint(cid, known)}")
    names = list(config.campaigns_by_event())
    for name in sorted(set(events) - set(names)):
        problems.append(f"--event {name!r}: the config maps no campaign to it{_hint(name, names)}")
    if problems:
        raise UsageFailure(problems)


def _hint(value: str, known: list[str]) -> str:
    close = difflib.get_close_matches(value, known, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def placeholder_problems(config: Config) -> list[str]:
    """Where the config still holds what ``retently init`` left to fill in."""
    problems = []
    for campaign in config.campaigns:
        where = f"{config.path}:{campaign.line}"
        if campaign.id == PLACEHOLDER_ID:
            problems.append(
                f'{where}: campaigns: "{PLACEHOLDER_ID}" is the starter\'s placeholder: put a '
                "campaign id there (retently campaigns lists them)"
            )
        if PLACEHOLDER in campaign.events:
            problems.append(
                f'{where}: campaigns.{campaign.id}: "{PLACEHOLDER}" is the starter\'s '
                "placeholder: write the Track event names there"
            )
    return problems


def refuse_placeholders(
    console: Console, config: Config, warn_only: bool = False, quiet: bool = False
) -> None:
    """A config straight from ``retently init`` is refused; a dry-run is told, and runs
    (trying a half-written config on real events is what a dry-run is for)."""
    problems = placeholder_problems(config)
    if problems and not warn_only:
        raise UsageFailure(problems)
    for problem in problems if not quiet else ():
        console.print(Text(f"warning: {visible(problem)}", style="yellow"), soft_wrap=True)


def warn_of_empty_inputs(console: Console, inputs: Inputs, stats: ReadStats) -> None:
    """One line per named input that held nothing (a run that reads nothing exits 0, and
    would otherwise look like a run with nothing to do)."""
    found = [what for what in map(lambda p: _emptiness(p, inputs, stats), inputs.paths) if what]
    if not found and stats.lines == 0:
        found = ["no events read from the input"]
    for what in found:
        console.print(Text(f"warning: {visible(what)}", style="yellow"), soft_wrap=True)


def _emptiness(path: str, inputs: Inputs, stats: ReadStats) -> str | None:
    read = stats.per_source
    if path == STDIN_NAME:
        alone = len(inputs.paths) == 1
        if read.get(STDIN_NAME) == 0 and (not alone or stats.bytes_read == 0):
            return "stdin was empty: no events read"
        return None
    if path in inputs.locations:
        return None
    if os.path.isdir(path):
        below = os.path.join(str(Path(path)), "")
        if not any(name.startswith(below) for name in read):
            return f"{path} holds no files to read"
        return None
    try:
        empty = os.path.getsize(path) == 0
    except OSError:
        return None
    if empty and read.get(str(Path(path))) == 0:
        return f"{path} is empty: no events read"
    return None


def show_problems(lines: list[str]) -> None:
    """How a ``RetentlyError`` is shown: one ``retently: ...`` line each, on stderr."""
    console = stderr_console()
    for line in lines:
        console.print(
            Text(f"retently: {visible(line)}"),
            style="red" if console.is_terminal else "",
            soft_wrap=True,
        )


def load_or_exit(console: Console, config_path: str | None, quiet: bool = False) -> Config:
    """The config, checked; with a warning when it holds a key other users can read, whether
    or not this command uses the key (the file is exposed all the same)."""
    path = find_config(config_path)
    if log.isEnabledFor(logging.INFO):
        source = _config_source()
        origin = (
            "--config"
            if source is ParameterSource.COMMANDLINE
            else f"${CONFIG_ENV}"
            if source is ParameterSource.ENVIRONMENT
            else "default"
        )
        log.info("config: %s (%s)", path, origin)
    try:
        config = load_config(path)
    except ConfigError as exc:
        if not path.exists() and not config_path:
            hint = f"give one with --config/-c or ${CONFIG_ENV}"
            raise ConfigError([*exc.problems, hint]) from None
        raise
    if not quiet:
        warn_if_key_exposed(console, config)
    return config


def _config_source() -> ParameterSource | None:
    """Where --config came from: the command line, $RETENTLY_CONFIG, or nowhere."""
    ctx = click.get_current_context(silent=True)
    return ctx.get_parameter_source("config_path") if ctx is not None else None


def warn_if_key_exposed(console: Console, config: Config) -> None:
    warning = literal_key_warning(config)
    if warning:
        console.print(Text(visible(warning), style="yellow"), soft_wrap=True)


class _TimeParam(click.ParamType):
    name = "time"

    def convert(self, value, param, ctx):
        when = parse_time(value)
        if when is None:
            self.fail(f"{value!r} is not an ISO-8601 date or date-time", param, ctx)
        return when


TIME = _TimeParam()


def config_option(f):
    return click.option(
        "-c",
        "--config",
        "config_path",
        metavar="PATH",
        envvar=CONFIG_ENV,
        show_envvar=True,
        help=f"Config file [default: ./{DEFAULT_CONFIG_NAME}].",
    )(f)


def api_key_file_option(f):
    return click.option(
        "--api-key-file",
        metavar="PATH",
        help="Read the API key from this file (- for stdin, when the events come from files). "
        f"Default: api_key in the config, else ${KEY_ENV}.",
    )(f)


def ledger_option(f):
    """``--ledger PATH``, else ``$RETENTLY_LEDGER``: for ``send`` and ``ledger``."""
    return click.option(
        "--ledger",
        "ledger_path",
        metavar="PATH",
        envvar=LEDGER_ENV,
        show_envvar=True,
        help="The delivery ledger (SQLite) that makes re-runs safe [default: one per API "
        "address in the user's data directory; every live send names it].",
    )(f)


def max_line_bytes_option(f):
    return click.option(
        "--max-line-bytes",
        type=click.IntRange(min=1),
        default=MAX_LINE_BYTES,
        show_default=True,
        metavar="BYTES",
        help="A longer line is reported as line_too_long and skipped, so memory stays bounded.",
    )(f)


def jobs_option(f):
    return click.option(
        "--jobs",
        type=click.IntRange(min=1),
        metavar="N",
        help="Worker processes that read local files and stdin, where nothing is sent (a "
        "dry-run, a send's plan, diff). Default: one per CPU, up to 4, once the input reaches "
        "16 MiB; 1 reads everything in this process.",
    )(f)


class _InputPath(click.Path):
    """A path that must exist, ``-`` for stdin, or a URL (``s3://bucket/prefix``), taken as
    it is here and checked, extra and bucket, before the run starts."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and is_url(value):
            local = local_path(value)
            if local is None:
                return value
            value = local
        return super().convert(value, param, ctx)


INPUT_PATH = _InputPath(exists=True, allow_dash=True)


def selection_options(f):
    """--include and --exclude: which files a folder walk reads."""
    f = click.option(
        "--exclude", "excludes", multiple=True, metavar="GLOB",
        help="In a folder walk, leave out files whose path below the folder matches GLOB "
        "(* matches across /; repeatable).",
    )(f)  # fmt: skip
    return click.option(
        "--include", "includes", multiple=True, metavar="GLOB",
        help="In a folder walk, read only files whose path below the folder matches GLOB "
        "(repeatable).",
    )(f)  # fmt: skip


def max_lateness_option(f):
    return click.option(
        "--max-lateness",
        type=click.FloatRange(min=0),
        default=DEFAULT_MAX_LATENESS_DAYS,
        show_default=True,
        metavar="DAYS",
        help="With --until, day folders of a Segment export starting this long after --until "
        "are not opened (events received later than that are not read).",
    )(f)


def open_inputs(
    console: Console,
    paths,
    max_line_bytes: int = MAX_LINE_BYTES,
    selection: Selection | None = None,
    announce_stdin: bool = True,
) -> Inputs:
    """The run's inputs; a URL that cannot be read (no s3 extra, no bucket, access denied)
    fails here, before anything is sent. Stdin on a terminal is announced, or the command
    would seem to hang."""
    try:
        inputs = Inputs(paths, sys.stdin.buffer, input_warning(console), max_line_bytes, selection)
    except RemoteError as exc:
        raise UsageFailure([str(exc)]) from None
    if announce_stdin and inputs.reads_stdin and sys.stdin.isatty():
        console.print(Text("reading events from stdin (Ctrl-D to end)"))
    return inputs


def input_warning(console: Console):
    """Where readers say what they pass over (a FIFO in a folder, a link looping back): on
    the console, unless the command was given -q (only errors then)."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.params.get("quiet"):
        return lambda text: None
    return lambda text: console.print(
        Text(f"retently: {visible(text)}", style="yellow"), soft_wrap=True
    )


def color_option(f):
    """--color: every command has it (the ledger's, which have no -v or -q, alone)."""
    return click.option(
        "--color", type=click.Choice(["auto", "always", "never"]), default="auto",
        show_default=True, expose_value=False, callback=_remember_color,
        help="Colour: auto is on a terminal unless $NO_COLOR is set; never also draws the "
        "progress line without escape codes.",
    )(f)  # fmt: skip


def verbosity_options(f):
    """-v, -q and --color: every command but the ledger's has them."""
    f = color_option(f)
    f = click.option("-q", "--quiet", is_flag=True, help="Print only errors on stderr.")(f)
    return click.option(
        "-v",
        "--verbose",
        count=True,
        help="Say more on stderr (-v: config, inputs, ledger and each request; "
        "-vv: also each input as read and the request and response bodies; never the key).",
    )(f)


def base_url_in_use(config: Config) -> str:
    """The API address in use: $RETENTLY_BASE_URL, else the config's base_url."""
    if not os.environ.get(BASE_URL_ENV):
        return config.delivery.base_url
    try:
        return check_base_url(os.environ[BASE_URL_ENV])
    except ValueError as exc:
        raise UsageFailure([f"${BASE_URL_ENV}: {exc}"]) from None


def api_client(config, api_key_file, events_from_stdin=False) -> RetentlyClient:
    """An API client with the key and base URL, all checked before anything is read."""
    base_url = base_url_in_use(config)
    key, origin = resolve_api_key(config, api_key_file, sys.stdin.buffer, events_from_stdin)
    log.info("API key from %s; API at %s", origin, base_url)  # where from, never the key
    return RetentlyClient(base_url, key, timeout=config.delivery.timeout)


def quiet_broken_pipe() -> NoReturn:
    """The reader of stdout went away (``| head``): stop without a traceback."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(ExitCode.PROBLEMS)


def exit_if_key_refused(answer) -> None:
    if answer.status in (401, 403):
        raise AuthError(["Retently refused the API key (401/403). Check the key."])
