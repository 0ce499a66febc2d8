"""SIGTERM or SIGHUP in the parts of a live send around the run itself: the identify
pre-pass, the [y/N] question, the start of the run, the summary. Each used Python's default
handling of those signals: the process was killed on the spot, with no word and no
--summary-json, although that file is written "on every way out of the command"."""

import json
import os
import pty
import signal
import subprocess
import sys
import time

import pytest
from helpers import NPS, ROOT, TEST_KEY, ended_within, ndjson, track

from retently_cli.fake_server import FakeRetently

DRIVER = str(ROOT / "tests" / "signal_at_a_line.py")
CONFIG = f'campaigns:\n  "{NPS}": "Order Completed"\nidentities:\n  from_identify: true\n'
EVENTS = 200


@pytest.fixture
def setup(tmp_path):
    (tmp_path / "c.yaml").write_text(CONFIG)
    events = (track(message_id=f"m{i}", email=f"u{i}@example.com") for i in range(EVENTS))
    (tmp_path / "e.ndjson").write_bytes(ndjson(*events))
    return tmp_path


def _send(tmp_path, url, signal_name, nth, where, *extra):
    env = {**os.environ, "NO_COLOR": "1", "RETENTLY_BASE_URL": url, "RETENTLY_API_KEY": TEST_KEY}
    return subprocess.run(
        [sys.executable, DRIVER, signal_name, str(nth), where, "--",
         "send", "-y", "-c", str(tmp_path / "c.yaml"), "--ledger", str(tmp_path / "l.sqlite3"),
         "--summary-json", str(tmp_path / "s.json"), *extra, str(tmp_path / "e.ndjson")],
        capture_output=True, cwd=ROOT, env=env, timeout=60,
    )  # fmt: skip


def _ending(tmp_path) -> dict:
    return json.loads((tmp_path / "s.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGHUP"])
@pytest.mark.parametrize(
    "where",
    [
        "retently_cli/identities.py:learn",  # the pre-pass reading identify calls
        "retently_cli/cli/send.py:_show_plan",  # the plan, before anything is sent
        "retently_cli/cli/send.py:_report",  # the outputs opened, the run not begun
    ],
)
def test_a_signal_before_the_run_sends_nothing_and_ends_as_an_interrupt(setup, signal_name, where):
    with FakeRetently(api_key=TEST_KEY) as fake:
        done = _send(setup, fake.url, signal_name, 3, where)
        sent = fake.survey_count()
    err = done.stderr.decode()
    assert "signalled at" in err, err
    assert done.returncode == 130 and "Traceback" not in err, err
    assert sent == 0
    assert _ending(setup)["exit_code"] == 130


@pytest.mark.slow
@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGHUP"])
def test_a_signal_once_everything_was_sent_lets_the_summary_end_as_it_would(setup, signal_name):
    """The run is over and settled: the signal is too late to change anything."""
    with FakeRetently(api_key=TEST_KEY) as fake:
        done = _send(setup, fake.url, signal_name, 3, "retently_cli/cli/send.py:_conclude")
        sent = fake.survey_count()
    err = done.stderr.decode()
    assert "signalled at" in err, err
    assert done.returncode == 0 and "Summary:" in err, err
    assert sent == EVENTS
    assert _ending(setup)["exit_code"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_at_the_question_sends_nothing_and_exits_130_at_once(setup, signum):
    leader, follower = pty.openpty()
    env = {**os.environ, "NO_COLOR": "1", "TERM": "xterm", "RETENTLY_API_KEY": TEST_KEY}
    with FakeRetently(api_key=TEST_KEY) as fake:
        proc = subprocess.Popen(
            [sys.executable, "-m", "retently_cli", "send", "-c", str(setup / "c.yaml"),
             "--ledger", str(setup / "l.sqlite3"), "--summary-json", str(setup / "s.json"),
             str(setup / "e.ndjson")],
            stdin=follower, stderr=follower, stdout=subprocess.DEVNULL, cwd=ROOT,
            env={**env, "RETENTLY_BASE_URL": fake.url}, start_new_session=True,
        )  # fmt: skip
        os.close(follower)
        seen = b""
        deadline = time.monotonic() + 30
        while b"[y/N]" not in seen and time.monotonic() < deadline:
            try:
                seen += os.read(leader, 65536)
            except OSError:
                break
        assert b"[y/N]" in seen, seen.decode(errors="replace")
        asked = time.monotonic()
        proc.send_signal(signum)
        ended_within(proc, 10)
        waited = time.monotonic() - asked
        sent = fake.survey_count()
    os.close(leader)
    assert proc.returncode == 130
    assert waited < 0.9  # at once: nothing is held while it waits for an answer
    assert sent == 0
    assert _ending(setup)["exit_code"] == 130


@pytest.mark.slow
@pytest.mark.parametrize("command", ["diff", "coverage"])
def test_a_signal_in_the_identify_pre_pass_of_diff_and_coverage_exits_130(setup, command):
    config = str(setup / "c.yaml")
    configs = [config, config] if command == "diff" else ["-c", config]
    done = subprocess.run(
        [sys.executable, DRIVER, "SIGTERM", "3", "retently_cli/identities.py:learn", "--",
         command, *configs, str(setup / "e.ndjson")],
        capture_output=True, cwd=ROOT, timeout=60, env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip
    err = done.stderr.decode()
    assert "signalled at" in err, err
    assert done.returncode == 130 and "Traceback" not in err, err


@pytest.mark.slow
def test_quitting_at_once_keeps_this_runs_failed_events_where_the_user_sees_them(tmp_path):
    """--failed F with F also an input (the retry workflow), then Ctrl-C twice: this run's
    failed events were left in a hidden temporary file beside F, and nothing said so."""
    (tmp_path / "c.yaml").write_text(
        f'campaigns:\n  "{NPS}": "Order Completed"\nbatch_size: 1\nconcurrency: 2\n'
    )
    failed = tmp_path / "failed.ndjson"
    events = (track(message_id=f"m{i}", email=f"u{i}@example.com") for i in range(40))
    failed.write_bytes(ndjson(*events))
    refused = [f"u{i}@example.com" for i in range(10)]
    with FakeRetently(
        api_key=TEST_KEY, per_email_failures=True, refused_emails=refused, slow_seconds=20
    ) as fake:
        proc = subprocess.Popen(
            [sys.executable, "-m", "retently_cli", "send", "-y", "-c", str(tmp_path / "c.yaml"),
             "--ledger", str(tmp_path / "l.sqlite3"), "--failed", str(failed), str(failed)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT,
            env={**os.environ, "NO_COLOR": "1", "RETENTLY_BASE_URL": fake.url,
                 "RETENTLY_API_KEY": TEST_KEY},
        )  # fmt: skip
        while fake.survey_count() < 12 and proc.poll() is None:
            time.sleep(0.05)
        fake.inject("slow", times=100)  # the next requests hang: the stop waits on them
        time.sleep(1)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, err = ended_within(proc, 30)
    text = err.decode()
    assert proc.returncode == 130 and "quitting now" in text, text
    kept = tmp_path / "failed.ndjson.new"
    assert f"this run's entries are in {kept}" in text, text
    assert len(kept.read_text().splitlines()) == 10  # the refused ones
    assert len(failed.read_text().splitlines()) == 40  # the input, as it was
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".failed")]
