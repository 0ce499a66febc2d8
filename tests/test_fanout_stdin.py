"""Workers reading stdin in pieces of whole lines (``--jobs``, or stdin over the threshold)
change nothing a user sees but the time taken: the same records in the same order and the same
summary as one process reading the stream, whatever the stream holds, wherever a line that
cannot be read alone comes, and when a worker dies part way."""

import errno
import gzip
import io
import os
import signal
import subprocess
import time
from collections.abc import Callable
from typing import BinaryIO, TypeVar

import orjson
import pytest
from helpers import EXAMPLE_CONFIG, RETENTLY, ROOT, records, run, send, track
from test_fanout import _wait_for_workers
from test_fast_path import MIXED

from retently_cli import fanout
from retently_cli.fanout import FanOut, Settled, Sieve
from retently_cli.readers import BadInput, ReadStats
from retently_cli.sources import expand_paths

T = TypeVar("T")
DEEP = b'{"a":' * 300 + b"1" + b"}" * 300  # deeper than orjson writes: no worker passes it on


def _events(count: int, start: int = 0) -> list[bytes]:
    """Mapped and unmapped events, some mapped ones without an email, a few duplicates."""
    names = ["Order Completed", "Product Viewed", "Page Loaded", "Onboarding Finished"]
    return [
        orjson.dumps(
            track(names[n % 4], f"m{n % 997 if n % 50 == 0 else n}", email=f"p{n}@x.co")
            if n % 7
            else track(names[n % 4], f"m{n}")
        )
        for n in range(start, start + count)
    ]


def _stream(middle: list[bytes], events: int = 6000) -> bytes:
    """About 1.2 MB of events, several pieces' worth, with ``middle`` in the third piece."""
    return b"\n".join([*_events(events // 2), *middle, *_events(events // 2, events)]) + b"\n"


ODD_LINES = [
    *MIXED,  # bad JSON, bad UTF-8, huge numbers, non-string messageIds, duplicates
    b"",
    b"   \t",
    b'\xef\xbb\xbf{"type":"track","event":"Order Completed","messageId":"bom"}',
    b'{"batch":[{"event":"Order Completed","messageId":"b1","properties":{"email":"b@x.co"}},'
    b'{"event":"Page Loaded","messageId":"b2"}],"context":{"ip":"1.2.3.4"}}',
    b"[1, 2]",
    b'"a string"',
    b'{"type":"track"} {"type":"track","event":"Order Completed","messageId":"two"}',
    b'{"type":"track","event":"Order Completed","messageId":"crlf"}\r',  # CRLF
    b'{"type":"track","event":"Order Completed","messageId":"cr1"}\r{"event":"x"}',  # a lone CR
    b"}",
]

STREAMS = {
    "lines that are each read alone": _stream(ODD_LINES),
    "a value pretty-printed over several lines": _stream(
        [
            orjson.dumps(
                track("Order Completed", "pretty", email="p@x.co"), option=orjson.OPT_INDENT_2
            )
        ]
    ),
    "a line longer than a piece": _stream(
        [orjson.dumps(track("Order Completed", "long", email="l@x.co", note="x" * 400_000))]
    ),
    "an event no worker can pass on, second in a batch": _stream(
        [
            b'{"batch":[{"event":"Order Completed","messageId":"d1",'
            b'"properties":{"email":"d@x.co"}},'
            b'{"event":"Order Completed","messageId":"d2","x":%s},'
            b'{"event":"Order Completed","messageId":"d3","properties":{"email":"e@x.co"}}]}' % DEEP
        ]
    ),
    "an open bracket at the very end": _stream([]) + b'{"type":"track","event":"Order',
    "no line ending at the end": _stream([])[:-1] + b"\r",
    "CRLF throughout": _stream(ODD_LINES).replace(b"\n", b"\r\n"),
    "a start of blank lines and a BOM": b"\n\n\xef\xbb\xbf  \n" + _stream([]),
    "an array over several lines": orjson.dumps(
        [orjson.loads(line) for line in _events(3000)], option=orjson.OPT_INDENT_2
    ),
    "gzip": gzip.compress(_stream(ODD_LINES)),
    "UTF-16": _stream([]).decode().encode("utf-16"),
    "nothing": b"",
}


def _both(data: bytes, *args) -> tuple:
    """(exit code, stdout, stderr) of one process reading stdin, and of workers reading it."""
    got = []
    for jobs in (1, 2):
        result = send("-n", "-o", "ndjson", "--jobs", jobs, *args, "-", input=data)
        assert "internal error" not in result.stderr
        got.append((result.exit_code, result.stdout_bytes, result.stderr))
    return tuple(got)


@pytest.mark.parametrize("shape", list(STREAMS))
def test_workers_reading_stdin_give_one_processs_records_and_summary(shape):
    alone, workers = _both(STREAMS[shape])
    assert workers == alone
    assert "read here instead" not in workers[2]  # handing back is not a worker lost


def test_a_line_over_the_limit_part_way_is_one_record_with_workers_too():
    data = _stream([orjson.dumps(track("Order Completed", "over", note="x" * 6000))])
    alone, workers = _both(data, "--max-line-bytes", 5000)
    assert workers == alone
    assert [r["line"] for r in records(alone[1]) if r["reason"] == "line_too_long"] == [3001]


def test_a_read_that_fails_part_way_is_one_record_after_every_line_before_it():
    class Failing(io.BytesIO):
        def read1(self, size=-1):
            data = super().read1(size)
            if not data:
                raise OSError(errno.EIO, "Input/output error")
            return data

    stream = _stream(ODD_LINES)
    got = []
    for jobs in (1, 2):
        result = send("-n", "-o", "ndjson", "--jobs", jobs, "-", input=Failing(stream[:-30]))
        got.append((result.exit_code, result.stdout_bytes, result.stderr))
    assert got[1] == got[0]
    last = records(got[0][1])[-1]
    assert (last["reason"], last["detail"]) == ("unreadable", "read failed: Input/output error")


def _broken_array() -> bytes:
    """A pretty-printed array with one broken item, then NDJSON: longer than 5,000 bytes."""
    items = [track("Order Completed", f"m{n}", email=f"m{n}@x.co") for n in range(6)]
    array = orjson.dumps(items, option=orjson.OPT_INDENT_2).replace(b'"m2"', b'"m2" oops')
    return array + b"\n" + b"\n".join(_events(100)) + b"\n"


@pytest.mark.parametrize("start", [b"\r\n", b"\r", b" \r\n\xef\xbb\xbf\r"])
def test_an_array_after_carriage_returns_is_read_as_one_process_reads_it(start):
    """A \r before the array is a line ending, as it is to one process: the stream starts
    with an array (it did not to the workers, who read it as lines and lost its good items)."""
    alone, workers = _both(start + _broken_array(), "--max-line-bytes", 5000)
    assert workers == alone
    got = records(alone[1])
    assert {r["message_id"] for r in got if r["outcome"] == "dry_run"} >= {"m0", "m1", "m3"}


def _fanned_out(stdin: BinaryIO) -> tuple[list, ReadStats]:
    """The entries of ``stdin`` read with two workers (``--jobs 2``), and the counts."""
    run = FanOut(Sieve(("Order Completed",), records=False), jobs=2, forced=True)
    stats = ReadStats()
    entries = [entry for _, given in run.read(expand_paths(["-"], stdin), stats) for entry in given]
    return entries, stats


def test_a_stream_whose_first_read_is_one_byte_is_still_known_for_gzip_or_utf16():
    """The first read of a pipe may bring one byte: too few to tell gzip or UTF-16 from text.
    The workers must not take such a stream for lines (they did: every line invalid UTF-8)."""
    plain = b"\n".join(_events(3000)) + b"\n"
    for data in (gzip.compress(plain), plain.decode().encode("utf-16")):
        entries, stats = _in_two_reads(data, 1, _fanned_out)
        assert stats.lines == 3000
        assert not [entry for entry in entries if isinstance(entry, tuple) and
                    isinstance(entry[1], BadInput)]  # fmt: skip


def _in_two_reads(data: bytes, cut: int, reader: Callable[[BinaryIO], T]) -> T:
    """``reader``'s result on a pipe whose first read ends after ``cut`` bytes: the rest is
    written only once the reader has taken those (the pipe holds nothing unread)."""
    import fcntl
    import struct
    import termios
    import threading

    read, write = os.pipe()

    def writer():
        os.write(write, data[:cut])
        deadline = time.monotonic() + 60
        unread = struct.pack("i", 1)
        while struct.unpack("i", unread)[0] and time.monotonic() < deadline:
            time.sleep(0.01)
            unread = fcntl.ioctl(write, termios.FIONREAD, struct.pack("i", 0))
        time.sleep(0.05)  # and has looked at them
        with os.fdopen(write, "wb") as rest:
            rest.write(data[cut:])

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        with os.fdopen(read, "rb") as stdin:
            return reader(stdin)
    finally:
        thread.join()


@pytest.mark.parametrize("cut", [2, 3])
def test_a_first_read_that_ends_inside_a_bom_waits_to_see_what_follows_it(cut):
    """A pipe's first read may end inside the BOM before an array (b"\\n\\xef"): the start is
    not known until the rest of the BOM comes, as one process finds it."""
    data = b"\n\xef\xbb\xbf" + _broken_array()
    alone = send("-n", "-o", "ndjson", "--jobs", 1, "--max-line-bytes", 5000, "-", input=data)
    command = [*RETENTLY, "send", "-n", "-o", "ndjson", "-c", str(EXAMPLE_CONFIG), "--jobs", "2",
               "--max-line-bytes", "5000", "-"]  # fmt: skip
    workers = _in_two_reads(
        data,
        cut,
        lambda stdin: subprocess.run(
            command, stdin=stdin, capture_output=True, cwd=ROOT, timeout=60
        ),
    )
    assert workers.stdout == alone.stdout_bytes
    assert workers.returncode == alone.exit_code


def test_lines_after_a_bom_cut_by_the_first_read_are_still_read_by_workers():
    data = b"\n\xef\xbb\xbf" + b"\n".join(_events(3000)) + b"\n"
    entries, stats = _in_two_reads(data, 2, _fanned_out)
    assert stats.lines == 3001
    assert any(isinstance(entry, Settled) for entry in entries)  # a worker read them


def _read_by_workers(data: bytes) -> tuple[list, bool]:
    """The entries of stdin read in pieces, and whether any came settled (by a worker)."""
    run = FanOut(Sieve(("Order Completed",), records=False), jobs=2, forced=True)
    entries = [
        entry
        for _, given in run.read(expand_paths(["-"], io.BytesIO(data)), ReadStats())
        for entry in given
    ]
    return entries, any(isinstance(entry, Settled) for entry in entries)


def _line(entry) -> int:
    return entry.last_line if isinstance(entry, Settled) else entry[0]


def test_stdin_is_read_by_workers_up_to_a_line_they_may_not_read_alone_and_here_after_it():
    entries, by_workers = _read_by_workers(STREAMS["lines that are each read alone"])
    assert by_workers
    entries, _ = _read_by_workers(STREAMS["a value pretty-printed over several lines"])
    assert any(isinstance(entry, Settled) for entry in entries if _line(entry) < 3001)
    after = [entry for entry in entries if _line(entry) >= 3001]  # the value starts on 3001
    assert after[0][1]["messageId"] == "pretty"
    assert not any(isinstance(entry, Settled) for entry in after)  # every line read here
    assert sum(e.count if isinstance(e, Settled) else 1 for e in entries) == 6001


# -- a real pipe ----------------------------------------------------------------------------


def _piped(tmp_path, data: bytes, *args) -> subprocess.Popen:
    """The dry-run reading ``data`` from a real pipe (``cat FILE | retently ...``)."""
    path = tmp_path / "events.ndjson"
    path.write_bytes(data)
    cat = subprocess.Popen(["cat", str(path)], stdout=subprocess.PIPE)
    command = [*RETENTLY, "send", "-n", "-o", "ndjson", "-c", str(EXAMPLE_CONFIG), *args, "-"]
    proc = subprocess.Popen(
        command, stdin=cat.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT
    )
    assert cat.stdout is not None
    cat.stdout.close()  # the run's now, alone
    return proc


@pytest.mark.slow
def test_a_pipe_over_the_threshold_is_read_by_workers_as_one_process_reads_it(tmp_path):
    data = b"".join(_stream(ODD_LINES, events=20_000) for _ in range(9))  # over 16 MiB
    assert len(data) > fanout.FANOUT_ABOVE
    runs = {}
    for jobs in (["--jobs", "1"], []):
        proc = _piped(tmp_path, data, *jobs)
        if not jobs:
            assert len(_wait_for_workers(proc)) == 2
        out, err = proc.communicate(timeout=180)
        runs[bool(jobs)] = (proc.returncode, out, err)
    assert runs[False] == runs[True]


@pytest.mark.slow
def test_workers_killed_part_way_into_stdin_lose_no_event_and_change_no_record(tmp_path):
    data = b"".join(_stream([], events=20_000) for _ in range(4))
    one = _piped(tmp_path, data, "--jobs", "1")
    alone = one.communicate(timeout=180)
    proc = _piped(tmp_path, data, "--jobs", "2")
    # Unread, stdout fills and the run waits on it, with pieces handed to both workers.
    workers = _wait_for_workers(proc)
    time.sleep(1.0)
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=180)
    assert (proc.returncode, out) == (one.returncode, alone[0])
    assert "-: the worker reading it stopped; read here instead" in err.decode()
    assert err.decode().split("Summary:")[1] == alone[1].decode().split("Summary:")[1]


@pytest.mark.parametrize("shape", ["lines that are each read alone", "CRLF throughout"])
def test_diff_of_stdin_read_by_workers_finds_the_same_changes(tmp_path, shape):
    new = tmp_path / "new.yaml"
    text = EXAMPLE_CONFIG.read_text()
    new.write_text(text.replace('"Onboarding Finished"', '"Onboarding Finished, Product Viewed"'))
    outputs = [
        run("diff", "--jobs", jobs, "-o", output, EXAMPLE_CONFIG, new, "-", input=STREAMS[shape])
        for jobs in (1, 2)
        for output in ("table", "ndjson")
    ]
    assert [(r.exit_code, r.stdout, r.stderr) for r in outputs[:2]] == [
        (r.exit_code, r.stdout, r.stderr) for r in outputs[2:]
    ]
    assert outputs[0].exit_code == 1 and "Product Viewed" in outputs[0].stdout


@pytest.mark.slow
@pytest.mark.parametrize("jobs", [1, 2])
@pytest.mark.parametrize("where", ["stdin", "a file"])
def test_a_run_stopped_part_way_counts_the_blank_lines_it_read(tmp_path, where, jobs):
    """A reader of stdout that goes away stops the run between two frames of a worker's: the
    summary must still count the blank lines among the lines it says were read (it counted
    those of whole frames only: '168 lines read' with 20 of them blank said nothing of them)."""
    import re

    lines = []  # one record a line: no event of two campaigns
    for n in range(60000):
        lines.append(orjson.dumps(track("Page Loaded" if n % 3 else "Onboarding Finished", n)))
        if n % 10 == 9:
            lines.append(b"")
    path = tmp_path / "events.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    source = f"- < {path}" if where == "stdin" else str(path)
    proc = subprocess.run(
        f"{' '.join(RETENTLY)} send -n -o ndjson --jobs {jobs} -c {EXAMPLE_CONFIG} {source} "
        "| head -c 100000",
        shell=True,
        capture_output=True,
        cwd=ROOT,
        timeout=120,
    )
    summary = proc.stderr.decode()
    assert "stdout was closed" in summary
    pattern = r"([\d,]+) lines read from 1 source(?: \(([\d,]+) blank\))?, ([\d,]+) records"
    found = re.search(pattern, summary)
    assert found, summary
    read, blank, written = (int((n or "0").replace(",", "")) for n in found.groups())
    assert 0 < read < len(lines)  # stopped part way
    assert read == written + blank


@pytest.mark.slow
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_ctrl_c_while_a_pipe_is_quiet_stops_the_run_at_once(jobs):
    """The signal is acted on while the run waits for more of stdin, with workers or not: the
    wait wakes at each tick to look (a select() with no timeout slept through it)."""
    data = _stream([], events=6000)
    command = [*RETENTLY, "send", "-n", "-o", "ndjson", "--jobs", jobs, "-c", str(EXAMPLE_CONFIG)]
    proc = subprocess.Popen(
        [*command, "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        cwd=ROOT,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(data)
        proc.stdin.flush()  # and left open: the pipe goes quiet
        expected = len(records(send("-n", "-o", "ndjson", "-", input=data).stdout))
        got = 0
        while got < expected:  # every line written has its record
            got += proc.stdout.readline().count(b"\n")
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        assert proc.wait(timeout=20) == 130  # stdin still open
        assert time.monotonic() - started < 3
        err = proc.stderr.read()
        assert b"interrupted" in err and b"Traceback" not in err
        assert b"6,000 lines read" in err, err
    finally:
        proc.kill()
