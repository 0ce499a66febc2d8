"""One SIGTERM (a container stopping) while the main thread is blocked where no check is: a
write to stdout that nobody reads. The signal is noted, the write goes on waiting, and no
second signal comes: the run must still stop within a few seconds, not wait for SIGKILL."""

import fcntl
import json
import os
import pty
import re
import signal
import subprocess
import sys
import termios
import threading
import time
import tty
from collections import Counter

import pytest
from helpers import CSAT, NPS, ROOT, TEST_KEY, ended_within, ndjson, records, track

from retently_cli.fake_server import FakeRetently
from retently_cli.interrupts import Interrupts, Stalled
from retently_cli.outputs import Output

CONFIG = f'campaigns:\n  "{NPS}": "Order Completed"\n  "{CSAT}": "Order Completed"\n' \
         "batch_size: 50\nrate_limit: 60000\n"  # fmt: skip
EVENTS = 3000  # records of over 1 MB: far more than a pipe holds


def _stalled_run(tmp_path, *args, env=None, output=("-o", "ndjson")):
    """The run, its stdout a pipe nobody reads, once that pipe is full and the run waits on
    it; and the pipe's read end, to read what was written."""
    (tmp_path / "c.yaml").write_text(CONFIG)
    events = (track(message_id=f"m{i}", email=f"u{i}@example.com") for i in range(EVENTS))
    (tmp_path / "e.ndjson").write_bytes(ndjson(*events))
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-m", "retently_cli", "send", "-c", str(tmp_path / "c.yaml"),
         *output, *args, str(tmp_path / "e.ndjson")],
        stdout=write_end, stderr=subprocess.PIPE, cwd=ROOT,
        env={**os.environ, "NO_COLOR": "1", **(env or {})},
    )  # fmt: skip
    os.close(write_end)
    _until_full(proc, read_end)
    return proc, read_end


def _until_full(proc: subprocess.Popen, read_end: int) -> None:
    """Until the run has written nothing more into the pipe for a second: it waits on it."""
    held, since = -1, time.monotonic()
    while time.monotonic() - since < 1.0:
        now = _held(read_end)
        if now != held:
            held, since = now, time.monotonic()
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        time.sleep(0.05)
    assert held > 0


def _held(fd: int) -> int:
    buf = bytearray(4)
    fcntl.ioctl(fd, termios.FIONREAD, buf)
    return int.from_bytes(buf, sys.byteorder)


def _drain(fd: int) -> bytes:
    os.set_blocking(fd, False)
    data = b""
    try:
        while chunk := os.read(fd, 1 << 16):
            data += chunk
    except BlockingIOError:
        pass
    os.close(fd)
    return data


@pytest.mark.slow
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_one_sigterm_while_stdout_is_not_read_stops_a_dry_run_with_its_summary(tmp_path, jobs):
    summary = tmp_path / "summary.json"
    proc, read_end = _stalled_run(tmp_path, "-n", "--jobs", jobs, "--summary-json", str(summary))
    proc.send_signal(signal.SIGTERM)
    _, err = ended_within(proc, 10)
    written = _drain(read_end)
    text = err.decode()
    assert proc.returncode == 130, text
    assert "interrupted" in text and "Summary:" in text, text
    assert "stdout" in text and "Traceback" not in text, text  # says why records stop short
    assert json.loads(summary.read_text())["exit_code"] == 130
    # what did get out is whole records, up to the last newline
    assert records(written[: written.rfind(b"\n") + 1])


@pytest.mark.slow
def test_one_sigterm_while_a_report_file_on_a_pipe_is_not_read_stops_the_run(tmp_path):
    """--report /dev/stdout (or a FIFO): a file the run opens itself. Closing it flushed what
    its buffer still held into the pipe nobody reads, and the run hung there."""
    summary = tmp_path / "summary.json"
    proc, read_end = _stalled_run(
        tmp_path, "-n", "--report", "/dev/stdout", "--summary-json", str(summary), output=()
    )
    proc.send_signal(signal.SIGTERM)
    _, err = ended_within(proc, 10)
    _drain(read_end)
    text = err.decode()
    assert proc.returncode == 130, text
    assert "/dev/stdout was not being read when the run was stopped" in text, text
    assert json.loads(summary.read_text())["exit_code"] == 130


@pytest.mark.slow
def test_one_sigterm_while_stdout_is_not_read_stops_a_live_send_and_a_rerun_surveys_once(
    tmp_path,
):
    with FakeRetently(api_key=TEST_KEY) as fake:
        env = {"RETENTLY_BASE_URL": fake.url, "RETENTLY_API_KEY": TEST_KEY}
        ledger = ["--ledger", str(tmp_path / "l.sqlite3"), "-y", "--grace", "2"]
        proc, read_end = _stalled_run(tmp_path, *ledger, env=env)
        proc.send_signal(signal.SIGTERM)
        _, err = ended_within(proc, 15)
        _drain(read_end)
        text = err.decode()
        assert proc.returncode == 130, text
        assert "interrupted" in text and "stdout" in text, text
        # every line read has both its surveys in the summary, the stdout records aside
        summary = re.search(r"Summary: (\d+) lines? read from 1 source, (\d+) records", text)
        assert summary and int(summary[2]) == 2 * int(summary[1]), text
        rerun = subprocess.run(
            [sys.executable, "-m", "retently_cli", "send", "-c", str(tmp_path / "c.yaml"),
             "-o", "ndjson", *ledger, str(tmp_path / "e.ndjson")],
            capture_output=True, cwd=ROOT, timeout=120,
            env={**os.environ, "NO_COLOR": "1", **env},
        )  # fmt: skip
        surveyed = Counter((s["campaign"], s["subscriber"]["email"]) for s in fake.surveys)
    assert rerun.returncode in (0, 1), rerun.stderr.decode()  # 1: some in flight, uncertain
    assert [key for key, n in surveyed.items() if n > 1] == []
    unsure = {
        (r["campaign"], r["email"]) for r in records(rerun.stdout) if r["reason"] == "earlier_run"
    }
    everyone = {(c, f"u{i}@example.com") for i in range(EVENTS) for c in (NPS, CSAT)}
    assert everyone - unsure <= set(surveyed), "a survey neither sent nor reported uncertain"


DRIVER = str(ROOT / "tests" / "signal_at_a_line.py")
F_SETPIPE_SZ = 1031  # Linux


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sets a pipe's size")
def test_stdout_that_stalls_only_after_the_signal_was_heeded_does_not_hold_the_run(tmp_path):
    """The signal is acted on between events, as usual; then the records gathered so far
    are written on the way out, into a pipe too small for them that nobody reads."""
    (tmp_path / "c.yaml").write_text(CONFIG)
    events = (track(message_id=f"m{i}", email=f"u{i}@example.com") for i in range(EVENTS))
    (tmp_path / "e.ndjson").write_bytes(ndjson(*events))
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, F_SETPIPE_SZ, 4096)
    summary = tmp_path / "summary.json"
    proc = subprocess.Popen(
        [sys.executable, DRIVER, "SIGTERM", "20", "retently_cli/run.py:_until_stopped", "--",
         "send", "-n", "--jobs", "1", "-c", str(tmp_path / "c.yaml"), "-o", "ndjson",
         "--summary-json", str(summary), str(tmp_path / "e.ndjson")],
        stdout=write_end, stderr=subprocess.PIPE, cwd=ROOT, env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip
    os.close(write_end)
    _, err = ended_within(proc, 10)
    written = _drain(read_end)
    text = err.decode()
    assert "signalled at" in text and proc.returncode == 130, text
    assert "was not being read when the run was stopped" in text, text
    assert json.loads(summary.read_text())["exit_code"] == 130
    assert 0 < len(written) <= 4096


@pytest.mark.slow
@pytest.mark.parametrize("output", [["-o", "ndjson"], ["--all-rows"]])
def test_one_sigterm_when_stdout_and_stderr_go_to_a_pipe_nobody_reads(tmp_path, output):
    """``2>&1 | reader`` with a reader that stopped: the summary cannot be written either,
    and must not hold the run; --summary-json still tells how it ended."""
    (tmp_path / "c.yaml").write_text(CONFIG)
    events = (track(message_id=f"m{i}", email=f"u{i}@example.com") for i in range(EVENTS))
    (tmp_path / "e.ndjson").write_bytes(ndjson(*events))
    summary = tmp_path / "summary.json"
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-m", "retently_cli", "send", "-n", "-c", str(tmp_path / "c.yaml"),
         *output, "--summary-json", str(summary), str(tmp_path / "e.ndjson")],
        stdout=write_end, stderr=write_end, cwd=ROOT, env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip
    os.close(write_end)
    _until_full(proc, read_end)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail("still running 10 s after the signal")
    finally:
        _drain(read_end)
    assert proc.returncode == 130
    assert json.loads(summary.read_text())["exit_code"] == 130


def _slow_reader(fd: int, gap: float) -> tuple[bytearray, threading.Thread]:
    """Takes 4 KiB every ``gap`` seconds until the end: a reader that is slow, not stopped."""
    got = bytearray()

    def read():
        while True:
            time.sleep(gap)
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                return
            if not chunk:
                return
            got.extend(chunk)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return got, thread


@pytest.mark.slow
def test_one_sigterm_with_a_slow_reader_of_stdout_keeps_every_record_whole(tmp_path):
    """40 KB/s: no write ever waits a second. The timer counted from the signal, not from the
    write's last progress, and gave stdout up in the middle of a record."""
    (tmp_path / "c.yaml").write_text(CONFIG)
    events = (track(message_id=f"m{i}", email=f"u{i}@example.com") for i in range(EVENTS))
    (tmp_path / "e.ndjson").write_bytes(ndjson(*events))
    read_end, write_end = os.pipe()
    got, reader = _slow_reader(read_end, 0.1)
    proc = subprocess.Popen(
        [sys.executable, "-m", "retently_cli", "send", "-n", "--jobs", "1", "-o", "ndjson",
         "-c", str(tmp_path / "c.yaml"), str(tmp_path / "e.ndjson")],
        stdout=write_end, stderr=subprocess.PIPE, cwd=ROOT, env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip
    os.close(write_end)
    time.sleep(2.5)
    proc.send_signal(signal.SIGTERM)
    _, err = ended_within(proc, 30)
    reader.join(30)
    text = err.decode()
    assert proc.returncode == 130 and "not being read" not in text, text
    summary = re.search(r"Summary: (\d+) lines? read from 1 source, (\d+) records", text)
    assert summary and got.endswith(b"\n"), text
    assert len(records(bytes(got))) == int(summary[2])


@pytest.mark.slow
def test_a_signal_during_the_summary_on_a_slowly_read_stderr_lets_it_finish(tmp_path):
    """Everything was sent; the signal is too late to change anything. It used to be raised a
    second later wherever the summary was: exit 130, stderr given up as closed while it was
    read, and the --failed file fed back as an input not replaced (the new failed events left
    in a hidden temporary file)."""
    refused = [f"u{i}@example.com" for i in range(0, 200, 10)]
    (tmp_path / "c.yaml").write_text(f'campaigns:\n  "{NPS}": "Order Completed"\n')
    events = (track(message_id=f"m{i}", email=f"u{i}@example.com") for i in range(200))
    (tmp_path / "e.ndjson").write_bytes(ndjson(*events))
    failed = tmp_path / "failed.ndjson"
    failed.write_bytes(
        ndjson(*(track(message_id=f"old{i}", email=f"o{i}@x.com") for i in range(5)))
    )
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, F_SETPIPE_SZ, 4096)
    got, reader = _slow_reader(read_end, 0.2)
    with FakeRetently(api_key=TEST_KEY, per_email_failures=True, refused_emails=refused) as fake:
        env = {"RETENTLY_BASE_URL": fake.url, "RETENTLY_API_KEY": TEST_KEY, "NO_COLOR": "1"}
        done = subprocess.run(
            [sys.executable, DRIVER, "SIGTERM", "3", "retently_cli/cli/send.py:_conclude", "--",
             "send", "-y", "--all-rows", "-c", str(tmp_path / "c.yaml"),
             "--ledger", str(tmp_path / "l.sqlite3"), "--failed", str(failed),
             "--summary-json", str(tmp_path / "s.json"), str(tmp_path / "e.ndjson"), str(failed)],
            stdout=subprocess.DEVNULL, stderr=write_end, cwd=ROOT, timeout=120,
            env={**os.environ, **env},
        )  # fmt: skip
        os.close(write_end)
        reader.join(60)
    text = got.decode()
    assert "signalled at" in text, text
    assert done.returncode == 1, text  # 20 refused: the run's own code, not 130
    assert "Summary: 205 lines read from 2 sources" in text and "20 events written" in text
    assert json.loads((tmp_path / "s.json").read_text())["exit_code"] == 1
    assert len(failed.read_text().splitlines()) == 20  # replaced by this run's failed events


@pytest.mark.slow
def test_a_slow_stdout_reader_is_kept_while_the_progress_bar_redraws_on_a_terminal(tmp_path):
    """Rich's progress thread writes stderr ten times a second; its writes cleared the mark
    the main thread's moving stdout write had set, and stdout was given up mid-record."""
    (tmp_path / "c.yaml").write_text(
        f'campaigns:\n  "{NPS}": "Order Completed"\nbatch_size: 100\nrate_limit: 60000\n'
    )
    events = (track(message_id=f"m{i}", email=f"u{i}@example.com") for i in range(20_000))
    (tmp_path / "e.ndjson").write_bytes(ndjson(*events))
    leader, follower = pty.openpty()
    _, terminal = _slow_reader(leader, 0.0)  # the terminal is read as fast as it writes
    read_end, write_end = os.pipe()
    got, reader = _slow_reader(read_end, 0.1)
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    with FakeRetently(api_key=TEST_KEY) as fake:
        env.update(TERM="xterm-256color", RETENTLY_BASE_URL=fake.url, RETENTLY_API_KEY=TEST_KEY)
        summary = tmp_path / "s.json"
        proc = subprocess.Popen(
            [sys.executable, "-m", "retently_cli", "send", "-y", "-o", "ndjson",
             "-c", str(tmp_path / "c.yaml"), "--ledger", str(tmp_path / "l.sqlite3"),
             "--summary-json", str(summary), str(tmp_path / "e.ndjson")],
            stdout=write_end, stderr=follower, stdin=subprocess.DEVNULL, cwd=ROOT, env=env,
        )  # fmt: skip
        os.close(follower)
        os.close(write_end)
        time.sleep(4)
        assert proc.poll() is None, "ended before the signal"
        proc.send_signal(signal.SIGTERM)
        ended_within(proc, 60)
        reader.join(60)
    assert proc.returncode == 130
    assert got.endswith(b"\n")
    assert len(records(bytes(got))) == json.loads(summary.read_text())["records"]


@pytest.mark.slow
def test_once_stopping_a_terminal_nobody_reads_is_given_up_not_waited_on():
    """poll() says a terminal takes more while it has any room; the write of a piece then
    blocked for ever once the signal had been acted on (no timer left to break it)."""
    leader, follower = pty.openpty()
    tty.setraw(follower)
    output = Output("stdout", os.fdopen(follower, "wb", buffering=0))
    interrupts = Interrupts()
    output.interrupts = interrupts
    with interrupts.noted():
        signal.raise_signal(signal.SIGTERM)
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()  # acted on: the run is stopping
        interrupts.too_late()  # and now its summary
        start = time.monotonic()
        while output.error is None and time.monotonic() - start < 10:
            for _ in range(200):  # 60 KB, then flushed: more than a terminal takes
                output.write(b"y" * 299 + b"\n")
            output.flush()
    assert isinstance(output.error, Stalled)
    assert time.monotonic() - start < 5
    os.close(leader)
