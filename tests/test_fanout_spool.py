"""A worker's spool: its frames reach the pipe whole and in order, whether they waited in
memory, in the temporary file, or in memory again, and whatever the disk does."""

import errno
import os
import threading
import time

import pytest

from retently_cli import fanout


def _frames(count=400):
    return [bytes([n % 251]) * (1 + (n * 7919) % 3000) for n in range(count)]


def _through_spool(monkeypatch, frames, held=4096, spilled=20_000, slow=True):
    monkeypatch.setattr(fanout, "_HELD_BYTES", held)
    monkeypatch.setattr(fanout, "_SPILLED_BYTES", spilled)
    read_end, write_end = os.pipe()
    got = bytearray()

    def reader():
        with os.fdopen(read_end, "rb", buffering=0) as pipe:
            while chunk := pipe.read(997):
                got.extend(chunk)
                if slow:
                    time.sleep(0.0005)  # the main process is elsewhere, for a while

    thread = threading.Thread(target=reader)
    thread.start()
    with os.fdopen(write_end, "wb", buffering=0) as pipe:
        spool = fanout._Spool(pipe)
        for frame in frames:
            spool.write(frame)
        spool.close()
    thread.join()
    return bytes(got)


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
