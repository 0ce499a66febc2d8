"""What tests share besides fixtures: run the CLI, build Segment input, read what the CLI printed.

Test files import from here (``from helpers import send, records``); conftest.py keeps only
fixtures, because importing conftest as a module is fragile (pytest loads it as a plugin).
"""

import gzip
import io
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner, Result

from retently_cli.cli import cli

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = ROOT / "config.example.yaml"

NPS = "5e1f9a3c2b7d4e0012ab34cd"
CSAT = "61ab2c9d8e7f6a0011bc45de"
CES = "63cd4e5f6a7b8c0022de56ef"
TEST_KEY = "test-key-0123456789"

# The command line that starts the CLI in a child process, as `retently` would.
RETENTLY = [sys.executable, "-m", "retently_cli"]


# -- running the CLI ------------------------------------------------------------------------------


def run(*args, input=None, env=None) -> Result:
    """The CLI in this process, ``args`` as typed after ``retently``; stdout and stderr apart."""
    return CliRunner().invoke(
        cli, [str(a) for a in args], input=input, env=env, prog_name="retently"
    )


def send(*args, config=EXAMPLE_CONFIG, input=None, env=None) -> Result:
    """``retently send -c CONFIG ARGS``: the example config unless the test brings its own."""
    return run("send", "-c", config, *args, input=input, env=env)


def run_process(*args, input=None, env=None, timeout=60, **popen) -> subprocess.CompletedProcess:
    """The CLI in a child process (real stdio, signals, exit paths); ``env`` adds to os.environ."""
    return subprocess.run(
        [*RETENTLY, *map(str, args)],
        input=input,
        capture_output=True,
        cwd=ROOT,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        **popen,
    )


def ended_within(proc: subprocess.Popen, seconds: float) -> tuple[bytes, bytes]:
    """Its output once it exits (after a signal); one still running then is killed, its stderr
    kept, and the test fails: no process is left behind."""
    try:
        return proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"still running {seconds} s after the signal:\n{err.decode()}")


# -- reading what it printed ----------------------------------------------------------------------


def records(stdout: str | bytes) -> list[dict]:
    """The NDJSON records of ``-o ndjson`` output, one per non-blank line."""
    if isinstance(stdout, str):
        stdout = stdout.encode()
    return [orjson.loads(line) for line in stdout.splitlines() if line.strip()]


def stderr_lines(result: Result | subprocess.CompletedProcess) -> list[str]:
    """The lines the run wrote to stderr (where messages, tables and the summary go)."""
    stderr = result.stderr
    if isinstance(stderr, bytes):
        stderr = stderr.decode()
    return stderr.splitlines()


# -- building Segment input -----------------------------------------------------------------------


def track(event="Order Completed", message_id="m1", email="ann@example.com", **properties):
    props = {"email": email, **properties} if email is not None else dict(properties)
    return {"type": "track", "event": event, "messageId": message_id, "properties": props}


def ndjson(*messages) -> bytes:
    return b"".join(orjson.dumps(m) + b"\n" for m in messages)


def write_gz(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as f:
        f.write(data)
    return path


def read_terminal(fd: int, proc: subprocess.Popen, timeout: float = 30, answer=None) -> bytes:
    """All a child wrote to the pseudo-terminal ``fd`` until it closed its end or exited;
    ``answer`` is typed once, when a ``[y/N]`` question appears."""
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the child closed its end
                break
            if not chunk:
                break
            seen += chunk
            if answer is not None and b"[y/N]" in seen:
                os.write(fd, answer)
                answer = None
        elif proc.poll() is not None:
            break
    proc.wait(timeout=10)
    return seen


def delivery_config(tmp_path: Path, **delivery) -> Path:
    """A config mapping Order Completed to NPS, with small, fast delivery settings for tests
    (``delivery`` overrides them)."""
    settings = {"batch_size": 1, "concurrency": 1, "max_attempts": 2, "rate_limit": 6000}
    settings.update(delivery)
    path = tmp_path / "c.yaml"
    path.write_text(
        f'campaigns: {{"{NPS}": "Order Completed"}}\n'
        + "".join(f"{key}: {value}\n" for key, value in settings.items())
    )
    return path


def numbered_events(tmp_path: Path, count: int, name: str = "e.ndjson") -> Path:
    """``count`` Order Completed events, messageIds 0.., each to its own email."""
    path = tmp_path / name
    path.write_bytes(
        ndjson(*(track(message_id=str(i), email=f"u{i}@example.com") for i in range(count)))
    )
    return path


def read_bytes(data: bytes, max_line_bytes: int | None = None):
    """``read_source`` over ``data``: the (line, message or BadInput) items and the stats."""
    from retently_cli.readers import ReadStats, Source, read_source

    stats = ReadStats()
    source = Source("input", lambda: io.BytesIO(data))
    if max_line_bytes is not None:
        source.max_line_bytes = max_line_bytes
    return list(read_source(source, stats)), stats


def read_ids(items) -> list[tuple[int, object]]:
    """(line, messageId) of the messages among ``read_bytes`` items."""
    return [(line, item.get("messageId")) for line, item in items if isinstance(item, dict)]


def read_failures(items) -> list[tuple[int, str]]:
    """(line, reason) of the bad inputs among ``read_bytes`` items."""
    from retently_cli.readers import BadInput

    return [(line, item.reason) for line, item in items if isinstance(item, BadInput)]
