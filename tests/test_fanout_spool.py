"""A worker's spool: its frames reach the pipe whole and in order, whether they waited in
memory, in the temporary file, or in memory again, and whatever the disk does."""

import errno
import os
import subprocess
import sys
import threading
import time

import pytest

from retently_cli import fanout


def _frames(count=400):
    return [bytes([n % 251]) * (1 + (n * 7919) % 3000) for n in range(count)]


def _through_spool(monkeypatch, frames, held=4096, spilled=20_000, slow=True):
    monkeypatch.setattr(fanout, "_HELD_BYTES", held)
    monkeypatch.setattr(fanout, "_SPILLED_BYTES", spilled)
    return _pass_through(frames, slow)


def _pass_through(frames, slow=True) -> bytes:
    """What a reader of the pipe gets of ``frames`` written through a spool."""
    read_end, write_end = os.pipe()
    got = bytearray()
    thread = threading.Thread(target=_read_all, args=(read_end, got, slow))
    thread.start()
    with os.fdopen(write_end, "wb", buffering=0) as pipe:
        spool = fanout._Spool(pipe)
        for frame in frames:
            spool.write(frame)
        spool.close()
    thread.join()
    return bytes(got)


def _read_all(fd: int, got: bytearray, slow: bool = True) -> None:
    with os.fdopen(fd, "rb", buffering=0) as pipe:
        while chunk := pipe.read(997):
            got.extend(chunk)
            if slow:
                time.sleep(0.0005)  # the main process is elsewhere, for a while


def test_frames_go_out_whole_and_in_order_through_memory_and_the_file(monkeypatch):
    frames = _frames()
    spilled = []
    real = os.pwrite
    monkeypatch.setattr(os, "pwrite", lambda *a: spilled.append(1) or real(*a))
    assert _through_spool(monkeypatch, frames) == b"".join(frames)
    assert spilled  # the file was used on the way


def test_with_no_temporary_file_to_be_had_the_worker_waits_on_the_pipe(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "read-only")

    monkeypatch.setattr(fanout.tempfile, "TemporaryFile", refuse)
    frames = _frames(200)
    assert _through_spool(monkeypatch, frames) == b"".join(frames)


def test_a_full_disk_part_way_loses_no_frame(monkeypatch):
    real = os.pwrite
    calls = []

    def fill_up(fd, data, offset):
        calls.append(1)
        if len(calls) > 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", fill_up)
    frames = _frames()
    assert _through_spool(monkeypatch, frames) == b"".join(frames)
    assert len(calls) > 5


def test_a_closed_pipe_stops_the_worker_with_a_broken_pipe(monkeypatch):
    monkeypatch.setattr(fanout, "_HELD_BYTES", 1000)
    read_end, write_end = os.pipe()
    os.close(read_end)
    with os.fdopen(write_end, "wb", buffering=0) as pipe:
        spool = fanout._Spool(pipe)
        with pytest.raises(BrokenPipeError):
            for frame in _frames(10_000):
                spool.write(frame)
        spool.close()  # returns: nothing waits on a pipe that is gone


# The disk fills part-way through a frame (a file-size limit stands in for it: the kernel takes
# what fits and refuses the rest, as on a full disk), with a slow reader so the file is used.
_SHORT_WRITE = """
import resource, signal, sys
sys.path.insert(0, sys.argv[1])
from retently_cli import fanout
from test_fanout_spool import _frames, _pass_through

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (10_007, 10_007))
fanout._HELD_BYTES, fanout._SPILLED_BYTES = 4096, 20_000
got = _pass_through(_frames())
print("whole" if got == b"".join(_frames()) else f"lost: {len(got)} bytes")
"""


@pytest.mark.slow
def test_a_disk_that_fills_part_way_through_a_frame_loses_nothing_and_hangs_nothing(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", _SHORT_WRITE, os.path.dirname(__file__)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert done.stdout.strip() == "whole", done.stderr


def test_a_temporary_file_that_cannot_be_read_back_ends_the_worker_and_its_pipe(monkeypatch):
    """Frames lost in the file: nothing may follow them, so the pipe closes (the main process
    then reads the file itself) and the worker's next write fails, rather than all waiting."""
    monkeypatch.setattr(fanout, "_HELD_BYTES", 4096)

    def failing(*args):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "pread", failing)
    read_end, write_end = os.pipe()
    got = bytearray()
    outcome = []

    def worker():
        pipe = os.fdopen(write_end, "wb", buffering=0)
        spool = fanout._Spool(pipe)
        try:
            for frame in _frames(10_000):
                spool.write(frame)
        except BrokenPipeError:
            outcome.append("broken pipe")
        spool.close()
        outcome.append("closed")

    threads = [
        threading.Thread(target=_read_all, args=(read_end, got), daemon=True),
        threading.Thread(target=worker, daemon=True),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert outcome == ["broken pipe", "closed"]
    assert not threads[0].is_alive()  # the reader saw the end of the pipe
    assert b"".join(_frames(10_000)).startswith(bytes(got))
