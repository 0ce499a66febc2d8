"""The real command in a real process: records stream out as lines stream in."""

import os
import queue
import signal
import subprocess
import sys
import threading
import time

import orjson
import pytest
from helpers import EXAMPLE_CONFIG, RETENTLY, ROOT, track


def start(*args):
    env = {**os.environ, "NO_COLOR": "1", "PYTHONUNBUFFERED": "0"}
    return subprocess.Popen(
        [*RETENTLY, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )


def line_reader(stream):
    """A queue receiving the stream's lines as they arrive."""
    lines: queue.Queue = queue.Queue()

    def pump():
        for line in iter(stream.readline, b""):
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


@pytest.mark.slow
@pytest.mark.parametrize("jobs", [[], ["--jobs", "2"]])  # read here, or by workers in pieces
def test_records_arrive_while_stdin_is_still_open(jobs):
    proc = start("send", "-n", "-o", "ndjson", "-c", str(EXAMPLE_CONFIG), *jobs, "-")
    out = line_reader(proc.stdout)
    try:
        for i in range(3):
            proc.stdin.write(
                orjson.dumps(track(event="Onboarding Finished", message_id=f"m{i}")) + b"\n"
            )
            proc.stdin.flush()
            record = orjson.loads(out.get(timeout=15))  # before any further input is written
            assert (record["line"], record["message_id"], record["outcome"]) == (
                i + 1,
                f"m{i}",
                "dry_run",
            )
        proc.stdin.write(b"not json\n")
        proc.stdin.flush()
        assert orjson.loads(out.get(timeout=15))["reason"] == "invalid_json"
        proc.stdin.close()
        assert proc.wait(timeout=15) == 1
        assert out.get(timeout=5) is None
        assert b"Summary: 4 lines read from 1 source, 4 records" in proc.stderr.read()
    finally:
        proc.kill()


@pytest.mark.slow
def test_ctrl_c_prints_the_summary_and_exits_130():
    proc = start("send", "-n", "-o", "ndjson", "-c", str(EXAMPLE_CONFIG), "-")
    out = line_reader(proc.stdout)
    try:
        proc.stdin.write(orjson.dumps(track(message_id="x")) + b"\n")
        proc.stdin.flush()
        out.get(timeout=15)
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 130
        err = proc.stderr.read().decode()
        assert "interrupted" in err and "2 records" in err
        assert "Traceback" not in err
    finally:
        proc.kill()


@pytest.mark.slow
def test_python_dash_m_and_a_closed_reader_of_stdout(tmp_path):
    many = b"".join(orjson.dumps(track(message_id=str(i))) + b"\n" for i in range(20000))
    (tmp_path / "many.ndjson").write_bytes(many)
    proc = subprocess.run(
        f"{sys.executable} -m retently_cli send -n -o ndjson -c {EXAMPLE_CONFIG} "
        f"{tmp_path / 'many.ndjson'} | head -n 1",
        shell=True,
        capture_output=True,
        cwd=ROOT,
        timeout=60,
    )
    assert orjson.loads(proc.stdout)["message_id"] == "0"
    assert b"Traceback" not in proc.stderr


@pytest.mark.slow
def test_a_closed_reader_of_stdout_mid_file_ends_the_run_with_its_own_exit_code(tmp_path):
    """The thread reading a file ahead may be inside a read when the run ends: the exit must
    not wait on that read's lock. It did: 'Fatal Python error: _enter_buffered_busy' and exit
    134 in 6 runs of 8, instead of the run's summary and exit code."""
    events = b"".join(
        orjson.dumps(track("Page Viewed", str(i), padding="x" * 600)) + b"\n" for i in range(40000)
    )
    (tmp_path / "big.ndjson").write_bytes(events)  # 26 MB: read in a thread, in one process
    for _ in range(5):
        proc = subprocess.run(
            f"{sys.executable} -m retently_cli send -n -o ndjson --jobs 1 -c {EXAMPLE_CONFIG} "
            f"{tmp_path / 'big.ndjson'} | head -c 100; exit ${{PIPESTATUS[0]}}",
            shell=True,
            executable="/bin/bash",
            capture_output=True,
            cwd=ROOT,
            timeout=60,
        )
        assert b"Fatal Python error" not in proc.stderr
        assert b"Exception ignored" not in proc.stderr
        assert proc.returncode == 1, proc.stderr.decode()[-500:]
        assert b"stdout was closed by the program reading it" in proc.stderr
