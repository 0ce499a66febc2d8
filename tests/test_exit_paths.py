"""Every way a send can end, expected or not, settles what it sent: it stops reading, waits
for the requests in flight, records their outcomes in the ledger, and exits with a documented
code and no traceback (issue 8, item 2)."""

import os
import resource
import sqlite3
import subprocess
import sys

import pytest
from helpers import EXAMPLE_CONFIG, RETENTLY, ROOT, TEST_KEY, ndjson, records, run, send, track

from retently_cli.deadletters import DeadLetters
from retently_cli.fake_server import FakeRetently
from retently_cli.outputs import Output


def events(n):
    return ndjson(*(track(message_id=f"m{i}", email=f"c{i}@example.com") for i in range(n)))


def tool_env(server, tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETENTLY_")}
    env.update(
        RETENTLY_BASE_URL=server.url if server else "http://127.0.0.1:9",
        RETENTLY_API_KEY=TEST_KEY,
        XDG_DATA_HOME=str(tmp_path / "xdg"),
        NO_COLOR="1",
        PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    env.update(extra)
    return env


def ledger_states(path) -> dict[str, int]:
    with sqlite3.connect(path) as db:
        return dict(db.execute("SELECT state, count(*) FROM deliveries GROUP BY state"))


def command(*args):
    return [*RETENTLY, "send", "-c", str(EXAMPLE_CONFIG), *args]


@pytest.fixture
def slow_server():
    """Every answer takes 0.4 s, so requests are in flight when the run is cut short."""
    with FakeRetently(api_key=TEST_KEY, slow_seconds=0.4, fault_rate=1.0,
                      fault_choices=["slow"]) as server:  # fmt: skip
        yield server


@pytest.mark.slow
def test_a_reader_closing_stdout_does_not_abandon_requests_in_flight(slow_server, tmp_path):
    source = tmp_path / "events.ndjson"
    source.write_bytes(events(2000))
    ledger = tmp_path / "ledger.sqlite3"
    proc = subprocess.Popen(
        command("-o", "ndjson", "--ledger", str(ledger), str(source)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=tool_env(slow_server, tmp_path),
        cwd=tmp_path,
    )
    first = proc.stdout.readline()  # the first outcome: requests are in flight now
    assert b'"outcome":"sent"' in first
    proc.stdout.close()  # `| head -n 1`
    _, err = proc.communicate(timeout=60)
    assert b"Traceback" not in err, err.decode()
    assert proc.returncode == 1, err.decode()
    states = ledger_states(ledger)
    assert "pending" not in states, states  # nothing left uncertain for ever
    assert states.get("sent", 0) == slow_server.survey_count()
    assert slow_server.survey_count() < 4000  # it did stop early
    assert b"stdout" in err and b"not sent" in err


@pytest.mark.slow
def test_a_report_on_a_full_disk_stops_the_run_cleanly(slow_server, tmp_path):
    source = tmp_path / "events.ndjson"
    source.write_bytes(events(2000))
    ledger = tmp_path / "ledger.sqlite3"
    done = subprocess.run(  # /dev/full: every write fails with ENOSPC, as on a full disk
        command("--ledger", str(ledger), "--report", "/dev/full", str(source)),
        capture_output=True,
        env=tool_env(slow_server, tmp_path),
        cwd=tmp_path,
        timeout=120,
    )
    err = done.stderr.decode()
    assert "Traceback" not in err, err
    assert done.returncode == 1, err
    assert "cannot write /dev/full: No space left on device; stopped reading" in err
    states = ledger_states(ledger)
    assert "pending" not in states, states
    assert states.get("sent", 0) == slow_server.survey_count() < 4000
    assert "Summary" in err


@pytest.mark.slow
def test_a_report_past_the_file_size_limit_stops_the_run_cleanly(fake, tmp_path):
    source = tmp_path / "events.ndjson"
    source.write_bytes(events(300))
    ledger, report = tmp_path / "ledger.sqlite3", tmp_path / "report.ndjson"

    def small_files():  # `ulimit -f`, high enough for the ledger, too low for the report
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))

    done = subprocess.run(
        command("-n", "--ledger", str(ledger), "--report", str(report), str(source)),
        capture_output=True,
        env=tool_env(fake, tmp_path),
        cwd=tmp_path,
        preexec_fn=small_files,
        timeout=120,
    )
    err = done.stderr.decode()
    assert "Traceback" not in err, err
    assert done.returncode == 1, err
    assert f"cannot write {report}: File too large; stopped reading" in err


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.01, 0.03, 0.08, 0.15, 0.25, 0.4])
def test_ctrl_c_during_start_up_exits_130_without_a_traceback(tmp_path, delay):
    """The signal comes ``delay`` s after the interpreter is up: while click, Rich and httpx
    are imported, while the config loads, or once the dry-run is under way."""
    source = tmp_path / "events.ndjson"
    source.write_bytes(events(3))
    argv = ["retently", "send", "-n", "-c", str(EXAMPLE_CONFIG), str(source)]
    code = (
        "import os, signal, sys, threading\n"
        f"timer = threading.Timer({delay}, os.kill, (os.getpid(), signal.SIGINT))\n"
        "timer.daemon = True\n"
        "timer.start()\n"
        f"sys.argv = {argv!r}\n"
        "from retently_cli.launch import main\n"
        "main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        env=tool_env(None, tmp_path),
        cwd=tmp_path,
        timeout=30,
    )
    err = done.stderr.decode()
    assert "Traceback" not in err and "Aborted" not in err, err
    assert done.returncode in (130, 0), (done.returncode, err)  # 0: it finished first


@pytest.mark.slow
def test_the_installed_command_starts_from_the_light_entry_point():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["retently"] == "retently_cli.launch:main"
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import retently_cli.launch"],
        capture_output=True,
        env=tool_env(None, ROOT),
    )
    assert b"click" not in done.stderr and b"rich" not in done.stderr


@pytest.mark.slow
def test_a_config_nested_100000_levels_deep_is_a_config_error(tmp_path):
    config = tmp_path / "deep.yaml"
    config.write_text("campaigns: " + "[" * 100_000 + "]" * 100_000 + "\n")
    result = run("check", "-c", str(config))
    assert result.exit_code == 2, result.output
    assert "nested" in result.stderr and str(config) in result.stderr
    result = run("send", "-n", "-c", str(config), "-", input=b"")
    assert result.exit_code == 2


def test_an_internal_error_mid_run_settles_in_flight_requests(slow_server, tmp_path, monkeypatch):
    """A bug in the reading thread must not leave surveys pending for ever."""
    from retently_cli import run

    real = run.LiveDelivery._submit
    calls = {"n": 0}

    def flaky(self, batches):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("a bug")
        return real(self, batches)

    monkeypatch.setattr(run.LiveDelivery, "_submit", flaky)
    monkeypatch.setenv("RETENTLY_BASE_URL", slow_server.url)
    monkeypatch.setenv("RETENTLY_API_KEY", TEST_KEY)
    ledger = tmp_path / "ledger.sqlite3"
    result = send("-o", "ndjson", "--ledger", str(ledger), "-", input=events(400))
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 1
    assert "RuntimeError: a bug" in result.stderr and "Traceback" not in result.stderr
    states = ledger_states(ledger)
    assert "pending" not in states
    sent = [r for r in records(result.stdout) if r["outcome"] == "sent"]
    assert len(sent) == states.get("sent", 0) == slow_server.survey_count()


@pytest.mark.slow
def test_a_closed_stderr_does_not_abandon_requests_in_flight(slow_server, tmp_path):
    source = tmp_path / "events.ndjson"
    source.write_bytes(events(2000))
    ledger = tmp_path / "ledger.sqlite3"
    proc = subprocess.Popen(  # `retently send --all-rows ... 2>&1 | head -3`
        command("--all-rows", "--ledger", str(ledger), str(source)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=tool_env(slow_server, tmp_path),
        cwd=tmp_path,
    )
    for _ in range(3):
        proc.stderr.readline()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 1
    states = ledger_states(ledger)
    assert "pending" not in states, states
    assert states.get("sent", 0) == slow_server.survey_count() < 4000


def test_dead_letters_count_only_the_lines_their_file_took():
    """'N events written to F' counted the lines that came after F failed too."""

    class Full:
        def __init__(self):
            self.taken = 0

        def write(self, data):
            if self.taken >= 2:
                raise OSError(28, "No space left on device")
            self.taken += 1
            return len(data)

        def flush(self):
            pass

    failures = []
    letters = DeadLetters(Output("failed.ndjson", Full(), failures.append))
    for n in range(5):
        letters.write({"messageId": f"m{n}"}, "c1", "rejected")
    assert (letters.count, letters.lost) == (2, 3) and len(failures) == 1
