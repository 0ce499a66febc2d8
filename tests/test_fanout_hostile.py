"""A second reader's attempts at ``--jobs``: inputs and endings a user meets, where a run with
workers must still say byte for byte what a run in one process says."""

import gc
import os
import re
import resource
import subprocess

import pytest
from helpers import EXAMPLE_CONFIG, RETENTLY, ROOT, ndjson, send, track
from test_fanout import _wait_for_workers

from retently_cli.fanout import FanOut
from retently_cli.readers import ReadStats
from retently_cli.sources import _file_source


def _both(*args, input=None):
    """(exit code, stdout, stderr) of ``send -n ARGS`` with --jobs 1 and with --jobs 2."""
    results = []
    for jobs in (1, 2):
        result = send("-n", "--jobs", jobs, *args, input=input)
        assert "internal error" not in result.stderr
        results.append((result.exit_code, result.stdout_bytes, result.stderr))
    return results


def test_a_folder_of_files_that_are_not_events_is_not_called_empty(tmp_path):
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "notes.txt").write_bytes(b"not events at all\n")
    alone, workers = _both("-o", "ndjson", folder)
    assert workers == alone
    assert "holds no files to read" not in alone[2]


def test_a_folder_of_one_dangling_link_is_called_empty_with_workers_too(tmp_path):
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "gone.ndjson").symlink_to(tmp_path / "missing")
    alone, workers = _both("-o", "ndjson", folder)
    assert workers == alone
    assert "holds no files to read" in alone[2]


def _process(jobs, *args, timeout=60, **popen):
    return subprocess.run(
        [*RETENTLY, "send", "-n", "-o", "ndjson", "-c", str(EXAMPLE_CONFIG), "--jobs", str(jobs),
         *map(str, args)],
        capture_output=True, cwd=ROOT, timeout=timeout, **popen,
    )  # fmt: skip


EVENTS = ndjson(*(track(message_id=f"m{n}", email=f"p{n}@x.co") for n in range(20)))


def test_dev_stdin_redirected_from_a_file_is_that_file_for_workers_too(tmp_path):
    # A worker's own stdin is its task pipe: handed "/dev/stdin" it read that, and waited.
    events = tmp_path / "events.ndjson"
    events.write_bytes(EVENTS)
    runs = []
    for jobs in (1, 2):
        with open(events, "rb") as stdin:
            runs.append(_process(jobs, "/dev/stdin", stdin=stdin))
    assert (runs[1].returncode, runs[1].stdout, runs[1].stderr) == (
        runs[0].returncode, runs[0].stdout, runs[0].stderr,
    )  # fmt: skip
    assert runs[0].stdout.count(b'"dry_run"') == 40


def test_a_pipe_named_by_its_descriptor_is_read_here(tmp_path):
    """``retently send -n <(zcat export.gz)``: the path is /dev/fd/N, a descriptor no worker has."""
    runs = []
    for jobs in (1, 2):
        read, write = os.pipe()
        os.write(write, EVENTS)
        os.close(write)
        try:
            runs.append(_process(jobs, f"/dev/fd/{read}", pass_fds=(read,)))
        finally:
            os.close(read)
    assert (runs[1].returncode, runs[1].stdout, runs[1].stderr) == (
        runs[0].returncode, runs[0].stdout, runs[0].stderr,
    )  # fmt: skip
    assert b"unreadable" not in runs[1].stdout


# An event no worker can pass on as JSON (nested deeper than orjson writes): the file goes back
# to the main process, which reads it again from the start.
DEEP = b'{"a":' * 300 + b"1" + b"}" * 300
HANDED_BACK = EVENTS + b'{"type":"track","event":"Order Completed","messageId":"s","x":%s}\n' % DEEP


def test_a_fifo_named_on_its_own_is_read_here(tmp_path):
    """A worker handing a FIFO back left the main process to read it again: it waited."""
    fifo = tmp_path / "events.fifo"
    os.mkfifo(fifo)
    runs = []
    for jobs in (1, 2):
        writer = subprocess.Popen(["sh", "-c", f"cat > '{fifo}'"], stdin=subprocess.PIPE)
        assert writer.stdin is not None
        writer.stdin.write(HANDED_BACK + EVENTS)
        writer.stdin.close()
        try:
            runs.append(_process(jobs, fifo, timeout=20))
        finally:
            writer.kill()
    assert (runs[1].returncode, runs[1].stdout, runs[1].stderr) == (
        runs[0].returncode, runs[0].stdout, runs[0].stderr,
    )  # fmt: skip


@pytest.mark.slow
def test_a_run_stopped_part_way_into_a_workers_file_counts_the_lines_it_took(tmp_path):
    """``| head -1``: the summary said "0 lines read from 0 sources" beside its records."""
    path = tmp_path / "big.ndjson"
    names = ["Product Viewed", "Order Completed", "Page Loaded"]
    path.write_bytes(
        ndjson(*(track(names[n % 3], f"m{n}", email=f"u{n}@x.co") for n in range(60_000)))
    )
    proc = subprocess.Popen(
        [*RETENTLY, "send", "-n", "-o", "ndjson", "-c", str(EXAMPLE_CONFIG), "--jobs", "2", path],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    summary = re.search(r"Summary: ([\d,]+) lines read from (\d+) source, ([\d,]+) records", err)
    assert summary is not None, err
    lines, sources, written = (int(n.replace(",", "")) for n in summary.groups())
    assert sources == 1
    assert lines > 0 and written > 0


def test_a_walks_warnings_come_in_the_order_of_reading(tmp_path):
    """Files are listed ahead for the workers: a FIFO or a link back up, met while listing,
    was warned of before the files listed earlier were read (and their warnings said)."""
    folder = tmp_path / "logs"
    (folder / "b").mkdir(parents=True)
    (folder / "a.ndjson").write_bytes(EVENTS)
    (folder / "a.txt").write_bytes(b"not events\n")
    os.mkfifo(folder / "b" / "pipe")
    (folder / "b" / "up").symlink_to(folder)
    (folder / "c.ndjson").write_bytes(EVENTS)
    (folder / "d.txt").write_bytes(b"not events either\n")
    alone, workers = _both("-o", "ndjson", folder)
    assert workers == alone
    warned = [line.split(": ", 2)[1] for line in alone[2].splitlines() if str(folder) in line]
    assert [os.path.relpath(path, folder) for path in warned] == [
        "a.txt",
        "d.txt",
        "b/up",
        "b/pipe",
    ]


@pytest.mark.slow
def test_no_worker_is_given_the_api_keys_environment_variables(tmp_path):
    """A worker inherited the whole environment: $RETENTLY_API_KEY and the variable the
    config's api_key names were in every worker's /proc/PID/environ."""
    config = tmp_path / "retently.yaml"
    config.write_text(
        EXAMPLE_CONFIG.read_text().replace("api_key: ${RETENTLY_API_KEY}", "")
        + "\napi_key: ${MY_RETENTLY_KEY}\n"
    )
    path = tmp_path / "big.ndjson"
    path.write_bytes(ndjson(*(track("Order Completed", f"m{n}") for n in range(60_000))))
    env = {
        **os.environ,
        "RETENTLY_API_KEY": "env-key-0123456789",
        "MY_RETENTLY_KEY": "cfg-key-9876543210",
    }
    proc = subprocess.Popen(
        [*RETENTLY, "send", "-n", "-o", "ndjson", "-c", str(config), "--jobs", "2", path],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    try:
        workers = _wait_for_workers(proc)  # stdout unread: the run waits with its workers
        environs = []
        for pid in workers:
            with open(f"/proc/{pid}/environ", "rb") as environ:
                environs.append(environ.read())
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    assert environs and all(b"PYTHONPATH" in found or b"PATH" in found for found in environs)
    for found in environs:
        assert b"env-key-0123456789" not in found and b"cfg-key-9876543210" not in found


def test_a_walks_warning_comes_after_the_table_rows_of_the_files_read_before_it(tmp_path):
    """Rows wait in a buffer and a walk's warning did not: it came before the rows of the
    file read before it (one process), or among them wherever a worker's frames kept the
    run waiting (with workers), so -o table differed from run to run."""
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "a.ndjson").write_bytes(EVENTS)
    (folder / "b.txt").write_bytes(b"not events\n")
    alone, workers = _both(folder)
    assert workers == alone
    lines = alone[2].splitlines()
    warning = next(n for n, line in enumerate(lines) if "b.txt: skipped" in line)
    assert any("a.ndjson:20" in line for line in lines[:warning])


def test_a_file_gone_before_the_main_process_reads_it_again_is_not_passed_over(tmp_path):
    """A worker hands a file back (an event too deep to pass on); by the time the main
    process opens it again to read on, it is gone (rotated, deleted). The open's failure
    was the first entry of the reading, so it was passed over as one the worker gave: the
    rest of the file was lost with no record, no warning and exit 0."""
    path = tmp_path / "events.ndjson"
    path.write_bytes(HANDED_BACK + EVENTS)
    fanout = FanOut.for_run(2, ["Order Completed"], records=False)
    assert fanout is not None
    taken = []
    for _, entries in fanout.read([_file_source(path)], ReadStats()):
        for entry in entries:
            if not taken:  # the worker has read the file: it goes before the main process reads
                path.unlink()
            taken.append(entry)
    assert len(taken) == 21
    assert taken[-1][0] == 0 and taken[-1][1].reason == "unreadable"


@pytest.mark.parametrize("files", [11, 12])
def test_workers_that_cannot_be_started_leave_the_reading_to_this_process(tmp_path, files):
    """At a low limit of open files, starting a worker failed with EMFILE, an internal error
    that stopped the run; --jobs 1 reads the same files at that limit."""
    path = tmp_path / "events.ndjson"
    path.write_bytes(EVENTS)

    def limited():
        resource.setrlimit(resource.RLIMIT_NOFILE, (files, files))

    runs = [_process(jobs, path, path, preexec_fn=limited) for jobs in (1, 3)]
    assert runs[0].returncode == 0
    assert (runs[1].returncode, runs[1].stdout, runs[1].stderr) == (
        runs[0].returncode, runs[0].stdout, runs[0].stderr,
    )  # fmt: skip


def test_closing_the_workers_leaves_no_descriptor_to_be_closed_again_later(tmp_path):
    """close() closed the pipes' descriptors under their file objects: a run stopped part
    way (its reading frame kept alive, as an output's error keeps it) then freed those
    objects later, and they closed whatever file had been given the same numbers since."""
    path = tmp_path / "events.ndjson"
    path.write_bytes(EVENTS * 3)
    fanout = FanOut.for_run(2, ["Order Completed"], records=False)
    assert fanout is not None
    reading = fanout.read([_file_source(path)], ReadStats())
    _, entries = next(reading)
    next(entries)  # stopped part way: the entries still hold the worker
    fanout.close()
    opened = [open(path, "rb") for _ in range(4)]  # given the numbers the pipes had
    del entries, reading
    gc.collect()
    for file in opened:
        assert file.read(1) == b"{"
        file.close()


@pytest.mark.parametrize(
    "replacement",
    [EVENTS[: len(EVENTS) // 2], ndjson(track(message_id="new", email="n@x.co")) + HANDED_BACK],
    ids=["truncated", "lines-inserted-before"],
)
def test_a_file_changed_before_the_main_process_reads_it_again_is_said(tmp_path, replacement):
    """Read again after a hand-back, a file's first events are passed over by count: if it
    was truncated or rewritten in between, those are not the events the worker gave."""
    said, _ = _read_handed_back(tmp_path, lambda path: path.write_bytes(replacement))
    assert any("changed while it was read" in text and "line 20" in text for text in said)


def test_a_file_read_again_unchanged_says_nothing(tmp_path):
    said, got = _read_handed_back(tmp_path, lambda path: None)
    assert said == [] and len(got) == 41


def _read_handed_back(tmp_path, at_first_entry):
    """(warnings, entries) of a file a worker hands back after 20 events; ``at_first_entry``
    is done to the file once the worker has read it, before the main process reads it again."""
    path = tmp_path / "events.ndjson"
    path.write_bytes(HANDED_BACK + EVENTS)
    fanout = FanOut.for_run(2, ["Order Completed"], records=False)
    assert fanout is not None
    said: list[str] = []
    fanout.warn = said.append
    got = []
    for _, entries in fanout.read([_file_source(path)], ReadStats()):
        for entry in entries:
            if not got:
                at_first_entry(path)
            got.append(entry)
    return said, got
