"""Worker processes reading files (``--jobs``) change nothing a user sees but the time taken:
the same records in the same order, the same summary, and nothing lost when a worker dies."""

import contextlib
import gzip
import io
import os
import signal
import subprocess
import sys
import time

import orjson
import pytest
from helpers import (
    EXAMPLE_CONFIG,
    RETENTLY,
    ROOT,
    delivery_config,
    ndjson,
    records,
    run,
    send,
    track,
)
from test_fast_path import MIXED

from retently_cli import fanout
from retently_cli.fanout import FanOut, Settled, Sieve
from retently_cli.readers import ReadStats
from retently_cli.sources import expand_paths


def _export(tmp_path):
    """A folder of every shape a worker must read as the main process does, and a file beside."""
    folder = tmp_path / "logs"
    (folder / "day").mkdir(parents=True)
    data = b"\n".join(MIXED) + b"\n"
    (folder / "day" / "a.ndjson").write_bytes(data)
    (folder / "day" / "b.gz").write_bytes(gzip.compress(data * 2))
    items = [orjson.loads(line) for line in MIXED[:8]]
    (folder / "day" / "c.json").write_bytes(orjson.dumps({"batch": items, "context": {"x": 1}}))
    (folder / "day" / "d.json").write_bytes(orjson.dumps(items, option=orjson.OPT_INDENT_2))
    (folder / "day" / "e.txt").write_bytes(b"not events at all\n")  # a walk skips it, warned
    (folder / "day" / "f.ndjson").write_bytes(b"")
    (folder / "day" / "g.ndjson").symlink_to(tmp_path / "missing")  # unreadable
    big = [track("Product Viewed", f"v{n}", note="x" * 400) for n in range(40)]
    (folder / "day" / "h.ndjson").write_bytes(orjson.dumps(big))  # one long array
    beside = tmp_path / "beside.ndjson"
    beside.write_bytes(ndjson(*(track(message_id=f"s{n}", email=f"p{n}@x.co") for n in range(30))))
    return [str(folder), "-", str(beside), str(folder / "day" / "a.ndjson")]


@pytest.mark.parametrize(
    "args",
    [
        ["-o", "ndjson"],
        [],
        ["-o", "ndjson", "--report", "REPORT"],
        ["-o", "ndjson", "--max-line-bytes", "2000"],
        ["--all-rows"],
    ],
)
def test_workers_give_one_processs_records_and_summary_byte_for_byte(tmp_path, args):
    inputs = _export(tmp_path)
    stdin = b"\n".join(MIXED[::-1]) + b"\n"
    results = {}
    for jobs in (1, 2, 3):
        report = tmp_path / f"report-{jobs}.ndjson"
        typed = [str(report) if a == "REPORT" else a for a in args]
        result = send("-n", "--jobs", jobs, *typed, *inputs, input=stdin)
        assert "internal error" not in result.stderr
        report_bytes = report.read_bytes() if report.exists() else b""
        results[jobs] = (result.exit_code, result.stdout_bytes, result.stderr, report_bytes)
    assert results[2] == results[1]
    assert results[3] == results[1]
    if "ndjson" in args:
        got = records(results[1][1])
        assert len({r["source"] for r in got}) >= 8
        assert any(r["reason"] == "no_campaign" for r in got)


def test_diff_with_workers_finds_the_same_changes(tmp_path):
    new = tmp_path / "new.yaml"
    text = EXAMPLE_CONFIG.read_text()
    new.write_text(text.replace('"Onboarding Finished"', '"Onboarding Finished, Product Viewed"'))
    inputs = [a for a in _export(tmp_path) if a != "-"]
    outputs = [
        run("diff", "--jobs", jobs, "-o", output, EXAMPLE_CONFIG, new, *inputs)
        for jobs in (1, 2)
        for output in ("table", "ndjson")
    ]
    assert [(r.exit_code, r.stdout, r.stderr) for r in outputs[:2]] == [
        (r.exit_code, r.stdout, r.stderr) for r in outputs[2:]
    ]
    assert outputs[0].exit_code == 1 and "Product Viewed" in outputs[0].stdout


def test_a_live_sends_plan_read_by_workers_is_the_plan_read_here(fake_env, tmp_path):
    config = delivery_config(tmp_path, batch_size=3)
    inputs = [a for a in _export(tmp_path) if a != "-"]
    plans = []
    for jobs in (1, 2):
        ledger = tmp_path / f"ledger-{jobs}.sqlite3"
        result = send("--jobs", jobs, "--ledger", ledger, *inputs, config=config)
        plan = [line for line in result.stderr.splitlines() if line.startswith(("Plan", "  "))]
        plans.append("\n".join(plan).replace(str(ledger), "LEDGER"))
    assert plans[0] == plans[1]
    assert "Plan: 33 surveys in 11 requests" in plans[0]


def test_workers_start_only_for_large_inputs_unless_asked():
    assert FanOut.for_run(1, ["a"], records=True) is None
    assert FanOut.for_run(2, ["a"], records=True).forced
    default = FanOut.for_run(None, ["a"], records=True)
    assert default is None or not default.forced  # one CPU: none


def _folder_bytes(folder) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("reached", ["at the first file", "after the walk and stdin", "never"])
def test_files_listed_ahead_of_the_reading_give_one_processs_records_and_warnings(
    tmp_path, monkeypatch, reached
):
    """Without --jobs, the files are listed ahead to decide whether workers read them: what
    the walk says on the way and stdin among them keep their place among the records."""
    inputs = _export(tmp_path)
    above = {
        "at the first file": 1,
        "after the walk and stdin": _folder_bytes(tmp_path / "logs") + 1,  # at beside.ndjson
        "never": 1 << 40,
    }[reached]
    stdin = b"\n".join(MIXED[::-1]) + b"\n"
    alone = send("-n", "-o", "ndjson", "--jobs", 1, *inputs, input=stdin)
    monkeypatch.setattr(fanout, "FANOUT_ABOVE", above)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    ahead = send("-n", "-o", "ndjson", *inputs, input=stdin)
    assert (ahead.exit_code, ahead.stdout_bytes, ahead.stderr) == (
        alone.exit_code,
        alone.stdout_bytes,
        alone.stderr,
    )
    assert "skipped" in alone.stderr  # the walk's warnings are among them


def _unmapped(path, events: int):
    """A file of events no campaign maps, so that a worker settles them (a ``Settled``)."""
    path.write_bytes(ndjson(*(track("Page Loaded", f"{path.name}-{n}") for n in range(events))))
    return path


def _read_by_workers(paths, stdin=None) -> list[tuple[str, bool]]:
    """Each source in the order read, with whether a worker read it: only a worker settles
    events as one ``Settled``; the main process gives every event on its own."""
    run = FanOut(Sieve(("Order Completed",), records=False), jobs=2)
    return [
        (source.name, any([isinstance(entry, Settled) for entry in entries]))  # taken whole
        for source, entries in run.read(expand_paths(map(str, paths), stdin), ReadStats())
    ]


def test_files_each_below_the_threshold_but_above_it_together_are_all_read_by_workers(
    tmp_path, monkeypatch
):
    paths = [_unmapped(tmp_path / f"{n}.ndjson", 200) for n in range(3)]
    monkeypatch.setattr(fanout, "FANOUT_ABOVE", sum(p.stat().st_size for p in paths[:2]))
    assert _read_by_workers(paths) == [(str(p), True) for p in paths]


def test_stdin_first_is_read_by_workers_too_once_the_files_after_it_reach_the_threshold(
    tmp_path, monkeypatch
):
    paths = [_unmapped(tmp_path / f"{n}.ndjson", 200) for n in range(2)]
    monkeypatch.setattr(fanout, "FANOUT_ABOVE", sum(p.stat().st_size for p in paths))
    stdin = io.BytesIO(ndjson(*(track("Page Loaded", f"in-{n}") for n in range(50))))
    got = _read_by_workers(["-", *paths], stdin)
    assert got == [("-", True)] + [(str(p), True) for p in paths]


@pytest.mark.parametrize("events, by_workers", [(50, False), (2000, True)])
def test_stdin_alone_is_read_by_workers_once_it_holds_the_threshold(
    monkeypatch, events, by_workers
):
    monkeypatch.setattr(fanout, "FANOUT_ABOVE", 100 * 1000)
    data = ndjson(*(track("Page Loaded", f"in-{n}") for n in range(events)))
    assert (len(data) >= 100 * 1000) is by_workers
    assert _read_by_workers(["-"], io.BytesIO(data)) == [("-", by_workers)]


def test_files_together_below_the_threshold_are_read_here(tmp_path, monkeypatch):
    paths = [_unmapped(tmp_path / f"{n}.ndjson", 200) for n in range(2)]
    monkeypatch.setattr(fanout, "FANOUT_ABOVE", sum(p.stat().st_size for p in paths) + 1)
    assert _read_by_workers(paths) == [(str(p), False) for p in paths]


def test_past_the_files_listed_ahead_workers_start_where_the_bytes_reach_the_threshold(
    tmp_path, monkeypatch
):
    """A listing too long to hold (a folder of many tiny files) is decided file by file."""
    paths = [_unmapped(tmp_path / f"{n}.ndjson", 200) for n in range(4)]
    monkeypatch.setattr(fanout, "_LOOK_AHEAD", 2)
    monkeypatch.setattr(fanout, "FANOUT_ABOVE", sum(p.stat().st_size for p in paths[:3]))
    got = _read_by_workers(paths)
    assert got == [(str(p), n >= 2) for n, p in enumerate(paths)]


# -- workers as processes ------------------------------------------------------------------


def _big(tmp_path, files=2, events=20_000):
    names = ["Product Viewed", "Order Completed", "Page Loaded"]
    paths = []
    for f in range(files):
        path = tmp_path / f"big-{f}.ndjson.gz"
        lines = ndjson(
            *(track(names[n % 3], f"{f}-{n}", email=f"u{n}@example.com") for n in range(events))
        )
        path.write_bytes(gzip.compress(lines, compresslevel=1))
        paths.append(str(path))
    return paths


def _dry_run_with_workers(paths) -> list[str]:
    return [
        *RETENTLY,
        "send",
        "-n",
        "-o",
        "ndjson",
        "-c",
        str(EXAMPLE_CONFIG),
        "--jobs",
        "2",
        *paths,
    ]


def _started_with_workers(tmp_path, **popen) -> tuple[subprocess.Popen, list[int]]:
    """A dry-run with two workers over two large files, its stdout and stderr piped and not
    read (so it soon waits on them, with its workers part way into their files)."""
    proc = subprocess.Popen(
        _dry_run_with_workers(_big(tmp_path)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        **popen,
    )
    return proc, _wait_for_workers(proc)


def _workers_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and _is_worker(entry):
                found.append(int(entry))
    return found


def _is_worker(pid: str) -> bool:
    """A child that runs the worker's code: between fork and exec it is still a copy of the
    main process (its environment too)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return b"retently_cli.fanout" in cmdline.read()
    except OSError:
        return False


def _wait_for_workers(proc, count=2, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workers = _workers_of(proc.pid)
        if len(workers) >= count:
            return workers
        time.sleep(0.05)
    raise AssertionError("no worker processes started")


def _gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_a_worker_killed_mid_file_loses_no_event_and_changes_no_record(tmp_path):
    paths = _big(tmp_path)
    command = [*RETENTLY, "send", "-n", "-o", "ndjson", "-c", str(EXAMPLE_CONFIG), *paths]
    alone = subprocess.run([*command, "--jobs", "1"], capture_output=True, cwd=ROOT, timeout=120)
    proc = subprocess.Popen(
        [*command, "--jobs", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT
    )
    # Unread, stdout fills and the run waits on it, with both workers part way into their file.
    workers = _wait_for_workers(proc)
    time.sleep(1.0)
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == alone.returncode
    assert out == alone.stdout
    text = err.decode()
    assert "the worker reading it stopped; read here instead" in text
    assert (
        text.replace(
            "warning: " + paths[0] + ": the worker reading it stopped; read here instead\n", ""
        ).replace(
            "warning: " + paths[1] + ": the worker reading it stopped; read here instead\n", ""
        )
        == alone.stderr.decode()
    )


@pytest.mark.slow
def test_ctrl_c_ends_the_workers_with_the_run_and_no_traceback(tmp_path):
    proc, workers = _started_with_workers(tmp_path, start_new_session=True)
    os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C does: to the whole process group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert b"Traceback" not in err and b"KeyboardInterrupt" not in err
    assert all(_gone(pid) for pid in workers)


@pytest.mark.slow
def test_ctrl_c_while_the_workers_are_held_up_stops_the_run_at_once(tmp_path):
    """The main process waits for a worker's next frame at ticks, so a signal noted meanwhile
    is acted on: a worker held up (here stopped; a hung disk read alike) kept it waiting."""
    proc = subprocess.Popen(
        _dry_run_with_workers(_big(tmp_path)), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    workers = _wait_for_workers(proc)
    try:
        for pid in workers:
            os.kill(pid, signal.SIGSTOP)
        time.sleep(1.0)  # what they had written is taken: the main process now waits
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        assert proc.wait(timeout=20) == 130
        assert time.monotonic() - started < 3
    finally:
        proc.kill()
        for pid in workers:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    assert b"interrupted" in proc.stderr.read()


def _input_position(pid: int, tmp_path) -> tuple[int, int] | None:
    """(where, size) of the test input the process has open, or None: none open now."""
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
            if link.startswith(str(tmp_path / "big-")):
                with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                    where = int(info.readline().split()[1])  # "pos:\t<offset>"
                return where, os.path.getsize(link)
    except (OSError, ValueError):
        return None
    return None


@pytest.mark.slow
def test_each_worker_reads_its_file_through_while_the_main_process_is_on_another(tmp_path):
    """Workers read side by side: while the main process is held up (its stdout is not read),
    the second worker reads its file to the end too, its records waiting in its spool. (A
    worker whose frames had only the pipe waited, from its first megabyte, until the main
    process reached its file: whatever the cores, one worker read at a time.)"""
    proc = subprocess.Popen(
        _dry_run_with_workers(_big(tmp_path, events=200_000)),  # more than a worker reads ahead
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    workers = _wait_for_workers(proc)
    opened: set[int] = set()
    through: set[int] = set()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(through) < len(workers):
            for pid in workers:
                position = _input_position(pid, tmp_path)
                if position is not None:
                    opened.add(pid)
                if pid in opened and (position is None or position[0] >= position[1]):
                    through.add(pid)
            time.sleep(0.02)
        assert through == set(workers)
        assert proc.poll() is None  # the main process is still on the first file
    finally:
        proc.kill()
        proc.communicate()


def _niceness(pid: int) -> tuple[int, int | None]:
    """The process's nice value, and its autogroup's (None where there are no autogroups)."""
    with open(f"/proc/{pid}/stat") as stat:
        nice = int(stat.read().rsplit(")", 1)[1].split()[16])
    try:
        with open(f"/proc/{pid}/autogroup") as group:
            words = group.read().split()  # "/autogroup-123 nice 5"
    except OSError:
        return nice, None
    # Empty where the process is in a task group that is not an autogroup (a container's
    # cgroup, as on the CI machines): then there is no autogroup niceness to compare.
    return nice, int(words[-1]) if words else None


@pytest.mark.slow
def test_workers_give_way_to_the_main_process(tmp_path):
    """On two busy cores the main process, which the run waits for, must win the contest
    for a core against the workers that only read ahead of it."""
    proc, workers = _started_with_workers(tmp_path)
    try:
        main_nice, main_group = _niceness(proc.pid)
        for pid in workers:
            deadline = time.monotonic() + 10
            # A worker sets both as it starts, its nice value first.
            while time.monotonic() < deadline and (
                _niceness(pid)[0] == main_nice
                or (main_group is not None and _niceness(pid)[1] == main_group)
            ):
                time.sleep(0.02)
            nice, group = _niceness(pid)
            assert nice > main_nice
            if group is not None and main_group is not None:
                assert group > main_group
    finally:
        proc.kill()
        proc.communicate()


@pytest.mark.slow
def test_the_worker_module_run_by_hand_leaves_its_callers_session_alone():
    """A worker lowers its autogroup's priority only in a session of its own, as FanOut starts
    it: run by hand from a shell, the autogroup is the shell's whole session (it was: every
    later command of that terminal ran at nice 5)."""
    script = (
        "import subprocess, sys\n"
        "subprocess.run([sys.executable, '-m', 'retently_cli.fanout'],"
        " stdin=subprocess.DEVNULL, check=True)\n"
        "try:\n"
        "    print(open('/proc/self/autogroup').read())\n"
        "except FileNotFoundError:\n"
        "    pass\n"
    )
    # In a session of its own, so that a failure costs nothing to the session running pytest.
    done = subprocess.run(
        [sys.executable, "-c", script], start_new_session=True, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr  # the worker ends quietly at the end of its tasks
    words = done.stdout.split()
    if not words:
        pytest.skip("no autogroups here (not Linux, or a task group that is not one)")
    assert words[-1] == "0"


@pytest.mark.slow
def test_a_reader_that_stops_reading_ends_the_workers(tmp_path):
    proc, workers = _started_with_workers(tmp_path)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert orjson.loads(first)["source"] == str(tmp_path / "big-0.ndjson.gz")
    proc.stdout.close()  # as `| head -1` does
    proc.wait(timeout=60)
    assert proc.returncode != 0
    assert all(_gone(pid) for pid in workers)


@pytest.mark.slow
def test_no_worker_outlives_a_killed_run(tmp_path):
    proc, workers = _started_with_workers(tmp_path)
    time.sleep(0.5)
    proc.kill()
    proc.wait(timeout=30)
    assert proc.stdout is not None
    proc.stdout.close()
    assert all(_gone(pid) for pid in workers)
