"""The run's memory of the events it has seen is exact: a new event is never taken for a
duplicate (that would drop its survey), even when the hashes of two keys are the same."""

import errno
import hashlib
import os

import pytest
from helpers import EXAMPLE_CONFIG, ndjson, records, run, track
from hypothesis import given, settings
from hypothesis import strategies as st

from retently_cli import matching
from retently_cli.keys_on_disk import KeysOnDisk
from retently_cli.matching import SeenKeys


def _few_hashes(kinds: int):
    """A hash whose values are only ``kinds``: the hashes of different keys meet."""

    def few(key: str) -> int:
        return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()[0] % kinds

    return few


@pytest.fixture
def few_hashes(monkeypatch):
    monkeypatch.setattr(matching, "_hash", _few_hashes(3))


@pytest.mark.parametrize("keys", [None, KeysOnDisk], ids=["in memory", "on disk"])
def test_keys_whose_hashes_are_the_same_are_each_new_once(few_hashes, keys, monkeypatch):
    monkeypatch.setattr(KeysOnDisk, "_WRITE_ABOVE", 64)  # nearly every key read from the file
    seen = SeenKeys(keys() if keys else None)
    names = [f"ajs-{n}" for n in range(200)]
    assert all(seen.add(key) for key in names)  # 200 keys, 3 hashes
    assert not any(seen.add(key) for key in names)
    assert seen.count == 200


def test_two_events_whose_key_hashes_meet_are_both_surveyed(few_hashes):
    events = [track(message_id=f"m{n}", email=f"p{n}@example.com") for n in range(20)]
    command = ("send", "-n", "-o", "ndjson", "-c", str(EXAMPLE_CONFIG), "-")
    result = run(*command, input=ndjson(*events))
    got = records(result.stdout)
    assert {r["reason"] for r in got} == {None}, [r for r in got if r["reason"]]
    assert len(got) == 2 * 20  # two campaigns map Order Completed


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=6), max_size=60), st.integers(1, 5))
def test_seen_keys_answers_as_a_set_does_whatever_the_hashes(keys, kinds):
    original = matching._hash
    matching._hash = _few_hashes(kinds)
    try:
        seen, truth = SeenKeys(), set()
        for key in keys:
            assert seen.add(key) == (key not in truth)
            truth.add(key)
    finally:
        matching._hash = original


def test_keys_past_the_first_megabyte_are_read_back_from_the_file():
    keys = KeysOnDisk()
    seen = SeenKeys(keys)
    names = [f"{n:08d}" + "x" * 100 for n in range(30_000)]  # about 3.3 MB of keys
    assert all(seen.add(key) for key in names)
    assert os.fstat(keys._file.fileno()).st_size > 3_000_000  # most of them on disk
    assert not any(seen.add(key) for key in names[::7])
    assert seen.add("another")


def test_a_full_disk_keeps_the_rest_of_the_keys_in_memory(monkeypatch):
    keys = KeysOnDisk()
    seen = SeenKeys(keys)
    names = [f"{n:08d}" + "y" * 100 for n in range(30_000)]
    assert all(seen.add(key) for key in names[:12_000])  # some written
    written = os.fstat(keys._file.fileno()).st_size
    real_write = os.write

    def full(fd, data):
        real_write(fd, bytes(data[:100]))  # a part written, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    assert all(seen.add(key) for key in names[12_000:])
    assert os.fstat(keys._file.fileno()).st_size == written + 100
    assert not any(seen.add(key) for key in names)
