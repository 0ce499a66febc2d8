"""Ctrl-C, SIGTERM or SIGHUP at any line of a live send's main thread, in real processes.

A signal can arrive while the main thread is inside a lock or a queue (the delivery's, the
reader's): an exception raised there leaves the lock held, and the run then hangs for ever
instead of stopping within its grace. ``signal_at_a_line.py`` sends the signal at a chosen
line of the standard library's locks and queues; these lines are spread over the whole run,
from the dispatcher's start (before the run takes the signals over) to the last outcome.
"""

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from helpers import CSAT, NPS, ROOT, TEST_KEY, ndjson, records, track

from retently_cli.fake_server import FakeRetently

DRIVER = str(ROOT / "tests" / "signal_at_a_line.py")
# where an exception raised at the wrong line leaves a lock held
WATCHED = ("queue.py", "threading.py")
GRACE = 2
CONFIG = f'campaigns:\n  "{NPS}": "Order Completed"\n  "{CSAT}": "Order Completed"\n' \
         "batch_size: 3\nrate_limit: 3000\n"  # fmt: skip
EVENTS = 60
POINTS = 12  # lines per signal


def _event(i):
    # 'ref' carries the messageId into the subscriber, so the server's surveys can be matched
    return track(message_id=f"m{i}", email=f"u{i}@example.com", ref=f"m{i}")


@pytest.fixture
def setup(tmp_path):
    (tmp_path / "c.yaml").write_text(CONFIG)
    (tmp_path / "e.ndjson").write_bytes(ndjson(*(_event(i) for i in range(EVENTS))))
    return tmp_path


def _send(tmp_path, url, signal_name="SIGINT", nth=10**9):
    env = {**os.environ, "NO_COLOR": "1", "RETENTLY_BASE_URL": url, "RETENTLY_API_KEY": TEST_KEY}
    command = [sys.executable, DRIVER, signal_name, str(nth), *WATCHED, "--",
               "send", "-c", str(tmp_path / "c.yaml"), "-o", "ndjson", "--grace", str(GRACE),
               "--ledger", str(tmp_path / "l.sqlite3"), str(tmp_path / "e.ndjson")]  # fmt: skip
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT
    )
    limit = GRACE + 20
    try:
        out, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"no exit {limit} s after the signal (grace {GRACE} s):\n{err.decode()}")
    return proc.returncode, out, err.decode()


@pytest.fixture(scope="module")
def lines_seen(tmp_path_factory):
    """How many watched lines a whole run takes, without a signal."""
    tmp_path = tmp_path_factory.mktemp("whole")
    (tmp_path / "c.yaml").write_text(CONFIG)
    (tmp_path / "e.ndjson").write_bytes(ndjson(*(_event(i) for i in range(EVENTS))))
    with FakeRetently(api_key=TEST_KEY) as fake:
        code, out, err = _send(tmp_path, fake.url)
    assert code == 0, err
    seen = re.search(r"never signalled \((\d+) lines seen\)", err)
    assert seen, err
    return int(seen[1])


@pytest.mark.slow
@pytest.mark.parametrize("point", range(POINTS))
@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_a_signal_at_any_line_stops_the_run_truthfully_and_a_rerun_sends_the_rest_once(
    setup, lines_seen, signal_name, point
):
    # each signal at its own lines, together spread evenly over the run
    offset = ["SIGINT", "SIGTERM", "SIGHUP"].index(signal_name)
    nth = lines_seen * (3 * point + offset + 1) // (3 * POINTS + 1)
    with FakeRetently(api_key=TEST_KEY) as fake:
        code, out, err = _send(setup, fake.url, signal_name, nth)
        assert "signalled at" in err, err
        first = records(out)
        summary = re.search(r"Summary: (\d+) lines? read from 1 source, (\d+) records", err)
        if summary is None:
            # before the send took the signal over: ended at once, as any program is
            assert code in (130, -getattr(signal, signal_name)), err
            assert (fake.surveys, first) == ([], []), err
        else:  # even after the last answer: a signal noted is never dropped
            assert code == 130 and "interrupted" in err and "internal error" not in err, err
            # every line read has its two records
            assert len(first) == int(summary[2]) == 2 * int(summary[1]), err
        assert len({(r["campaign"], r["message_id"]) for r in first}) == len(first), err
        code, out, err = _send(setup, fake.url)
        surveyed = Counter((s["campaign"], s["subscriber"]["email"]) for s in fake.surveys)
    assert code in (0, 1), err  # 1: some surveys uncertain (in flight at the stop)
    assert [key for key, n in surveyed.items() if n > 1] == []
    unsure = {(r["campaign"], r["email"]) for r in records(out) if r["reason"] == "earlier_run"}
    expected = {(c, f"u{i}@example.com") for i in range(EVENTS) for c in (NPS, CSAT)}
    assert expected - unsure <= set(surveyed), "a survey neither sent nor reported uncertain"


@pytest.fixture(scope="module")
def imports_seen(tmp_path_factory):
    """How many lines of that callback a dry-run of the example runs, without a signal."""
    done = subprocess.run(
        [sys.executable, DRIVER, "SIGINT", str(10**9), IMPORTS, "--", *DRY_RUN],
        capture_output=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    seen = re.search(r"never signalled \((\d+) lines seen\)", done.stderr.decode())
    assert done.returncode == 0 and seen, done.stderr.decode()
    return int(seen[1])


# The callback of importlib's module locks: what is raised in it is printed and dropped.
IMPORTS = "importlib._bootstrap>:cb"  # in "<frozen importlib._bootstrap>"
DRY_RUN = ("send", "-n", "-c", "config.example.yaml", "examples/events.ndjson")


@pytest.mark.slow
@pytest.mark.parametrize("point", range(POINTS))
def test_ctrl_c_during_an_import_exits_130_without_a_traceback(imports_seen, point):
    """importlib drops an exception raised in its module locks' callback ("Exception ignored
    in ... KeyboardInterrupt"): the Ctrl-C was lost and the run went on to exit 0."""
    nth = imports_seen * (point + 1) // (POINTS + 1)
    done = subprocess.run(
        [sys.executable, DRIVER, "SIGINT", str(nth), IMPORTS, "--", *DRY_RUN],
        capture_output=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    err = done.stderr.decode()
    assert "signalled at" in err, err
    assert done.returncode == 130, err
    assert "Traceback" not in err and "Exception ignored" not in err, err


@pytest.mark.slow
@pytest.mark.parametrize("nth", range(20, 141, 15))
def test_a_signal_while_the_queue_is_full_still_records_both_surveys_of_the_event(tmp_path, nth):
    """The reading waits in Dispatcher.submit for room (a slow rate limit): a signal then must
    not cut the event short, leaving its other campaign's survey in no record."""
    (tmp_path / "c.yaml").write_text(
        CONFIG.replace("batch_size: 3\nrate_limit: 3000", "batch_size: 1\nrate_limit: 600")
    )
    (tmp_path / "e.ndjson").write_bytes(ndjson(*(_event(i) for i in range(EVENTS))))
    env = {**os.environ, "NO_COLOR": "1", "RETENTLY_API_KEY": TEST_KEY}
    with FakeRetently(api_key=TEST_KEY) as fake:
        done = subprocess.run(
            [sys.executable, DRIVER, "SIGINT", str(nth), "retently_cli/delivery.py:submit", "--",
             "send", "-y", "-c", str(tmp_path / "c.yaml"), "-o", "ndjson", "--grace", "1",
             "--ledger", str(tmp_path / "l.sqlite3"), str(tmp_path / "e.ndjson")],
            capture_output=True, cwd=ROOT, timeout=60, env={**env, "RETENTLY_BASE_URL": fake.url},
        )  # fmt: skip
    err = done.stderr.decode()
    assert "signalled at" in err and done.returncode == 130, err
    per_line = Counter(r["line"] for r in records(done.stdout))
    assert [line for line, n in per_line.items() if n != 2] == [], err
    summary = re.search(r"Summary: (\d+) lines? read from 1 source, (\d+) records", err)
    assert summary and int(summary[2]) == 2 * int(summary[1]) == 2 * len(per_line), err


@pytest.mark.slow
@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_a_signal_during_a_walk_of_empty_files_is_acted_on_before_anything_is_sent(
    tmp_path, signal_name
):
    """Empty files give no event to check for a signal after: it was noted, then dropped when
    the plan ended, and the send went out (exit 0) although the run was told to stop."""
    (tmp_path / "c.yaml").write_text(CONFIG)
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "a.ndjson").write_bytes(ndjson(*(_event(i) for i in range(30))))
    for n in range(300):
        (folder / f"b{n:03d}.ndjson").write_bytes(b"")
    env = {**os.environ, "NO_COLOR": "1", "RETENTLY_API_KEY": TEST_KEY}
    with FakeRetently(api_key=TEST_KEY) as fake:
        done = subprocess.run(
            [sys.executable, DRIVER, signal_name, "200", "retently_cli/readers.py:read_source",
             "--", "send", "-y", "-c", str(tmp_path / "c.yaml"), "-o", "ndjson",
             "--ledger", str(tmp_path / "l.sqlite3"), str(folder)],
            capture_output=True, cwd=ROOT, timeout=60, env={**env, "RETENTLY_BASE_URL": fake.url},
        )  # fmt: skip
        sent = fake.survey_count()
    err = done.stderr.decode()
    assert "signalled at" in err and "planning" in err, err
    assert done.returncode == 130 and "interrupted" in err, err
    assert sent == 0 and done.stdout == b"", err  # stopped in the plan: nothing sent


@pytest.mark.slow
@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_a_signal_while_a_fifo_given_as_a_path_is_quiet_stops_the_run_at_once(
    tmp_path, signal_name
):
    """A FIFO (or `<(...)`) has a size of 0: it was read in the main thread, which a noted
    signal never reached while the writer was quiet."""
    fifo = tmp_path / "events"
    os.mkfifo(fifo)
    command = [sys.executable, "-m", "retently_cli", "send", "-n", "-o", "ndjson", "-c",
               str(ROOT / "config.example.yaml"), str(fifo)]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        with open(fifo, "wb") as writer:  # waits for the run to open it
            writer.write(ndjson(*(_event(i) for i in range(5))))
            writer.flush()
            time.sleep(1.0)  # read, and then the FIFO is quiet
            proc.send_signal(getattr(signal, signal_name))
            started = time.monotonic()
            assert proc.wait(timeout=20) == 130  # the writer still open: the FIFO is quiet
            assert time.monotonic() - started < 3
        err = proc.stderr.read().decode()
        assert "interrupted" in err and "5 lines read" in err, err
    finally:
        proc.kill()


@pytest.mark.slow
@pytest.mark.parametrize("nth", range(2, 25, 2))
@pytest.mark.parametrize("command", ["diff", "coverage"])
def test_ctrl_c_in_diff_or_coverage_as_a_reader_thread_starts_exits_130(tmp_path, command, nth):
    """Raised inside Thread.start() of the thread reading stdin ahead, it ended diff with a
    traceback, 'RuntimeError: release unlocked lock' and exit 1 (for diff: 'changes')."""
    config = str(ROOT / "config.example.yaml")
    new = tmp_path / "new.yaml"
    new.write_text(Path(config).read_text().replace('"Onboarding Finished"', '"Product Viewed"'))
    if command == "diff":
        args = ["diff", "--jobs", "1", config, str(new), "-"]
    else:
        args = ["coverage", "-c", config, "-"]
    done = subprocess.run(
        [sys.executable, DRIVER, "SIGINT", str(nth), "threading.py:start", "threading.py:wait",
         "--", *args],
        input=(ROOT / "examples" / "events.ndjson").read_bytes(), capture_output=True, cwd=ROOT,
        timeout=60,
    )  # fmt: skip
    err = done.stderr.decode()
    assert "signalled at" in err, err
    assert done.returncode == 130 and "Traceback" not in err, err
