"""Issue 8's reader defects: bad lines cost only themselves, long lines are bounded, every input
is read or reported."""

import gzip
import io
import itertools
import os
import tracemalloc

import orjson
import pytest
from helpers import EXAMPLE_CONFIG, ndjson, read_bytes, read_failures, read_ids, records, run, track

from retently_cli.readers import BadInput, ReadStats, Source, expand_paths, read_source

MiB = 1 << 20


def many(n, start=0):
    return ndjson(*(track(message_id=str(i)) for i in range(start, start + n)))


# 5. A bad record anywhere costs its own line(s) only.

BAD_LINES = [
    b'{"type": "track", "ev',  # cut inside a string
    b'{"type": "track", "event": 1',  # cut between tokens
    b"[",
    b"{",
    b"[1, 2",
    b'[{"type": "track", "messageId": "x"}',  # an array that never closes
    b'{"a": [',
    b'{"a": [1,',
]


@pytest.mark.parametrize("broken", BAD_LINES)
@pytest.mark.parametrize("position", [0, 5, 20])
def test_one_bad_line_anywhere_costs_that_line_only(broken, position):
    data = many(position) + broken + b"\n" + many(20, start=position)
    items, stats = read_bytes(data)
    assert read_failures(items) == [(position + 1, "invalid_json")]
    expected = [(i + 1, str(i)) for i in range(position)]
    expected += [(i + 2, str(i)) for i in range(position, position + 20)]
    assert read_ids(items) == expected
    assert stats.lines == position + 21


def test_a_record_split_inside_a_string_costs_its_two_lines():
    whole = orjson.dumps(track(message_id="split"))
    cut = whole.index(b"Order") + 3
    data = whole[:cut] + b"\n" + whole[cut:] + b"\n" + many(3)
    items, _ = read_bytes(data)
    assert read_failures(items) == [(1, "invalid_json"), (2, "invalid_json")]
    assert read_ids(items) == [(3, "0"), (4, "1"), (5, "2")]


def test_a_record_split_between_tokens_is_one_message_and_the_rest_is_ndjson():
    whole = orjson.dumps(track(message_id="split"))
    cut = whole.index(b'"properties"')
    data = whole[:cut] + b"\n" + whole[cut:] + b"\n" + many(3)
    items, _ = read_bytes(data)
    assert read_ids(items) == [(1, "split"), (3, "0"), (4, "1"), (5, "2")]
    assert not read_failures(items)


def test_a_value_that_never_closes_is_held_no_longer_than_the_line_limit():
    # "{"a": [1," allows an object after it, so only the limit stops it from swallowing the file
    data = b'{"a": [1,\n' + many(200)
    items, _ = read_bytes(data, max_line_bytes=4096)
    assert read_failures(items) == [(1, "invalid_json")]
    assert read_ids(items) == [(i + 2, str(i)) for i in range(200)]


def test_a_broken_pretty_document_is_one_record_but_never_hides_a_line_of_ndjson():
    pretty = orjson.dumps(track(message_id="p"), option=orjson.OPT_INDENT_2)
    broken = pretty.replace(b'"event": "Order Completed"', b'"event": "Order" Completed"')
    items, _ = read_bytes(broken + b"\n" + many(2))
    lines = len(pretty.splitlines())
    assert [reason for _, reason in read_failures(items)] == ["invalid_json"]
    assert read_ids(items) == [(lines + 1, "0"), (lines + 2, "1")]
    # a bracket that lets an object follow, NDJSON, and a closer: not one broken value
    items, _ = read_bytes(b"[\n" + many(1) + b"x]\n" + many(1, start=1))
    assert read_ids(items) == [(2, "0"), (4, "1")]
    assert read_failures(items) == [(1, "invalid_json"), (3, "invalid_json")]


def test_compact_items_of_a_pretty_array_keep_their_lines():
    data = b"[\n" + b",\n".join(orjson.dumps(track(message_id=m)) for m in "abc") + b"\n]\n"
    items, _ = read_bytes(data + many(1))
    assert read_ids(items) == [(2, "a"), (3, "b"), (4, "c"), (6, "0")]


# 9. Long lines: linear, bounded, reported.


class Zeros(io.RawIOBase):
    """``size`` NUL bytes (for ever when None), then ``tail``."""

    def __init__(self, size=None, tail=b""):
        self.left, self.tail = size, tail

    def readable(self):
        return True

    def read1(self, n=-1):
        if self.left is None:
            return b"\0" * n
        if self.left == 0:
            tail, self.tail = self.tail, b""
            return tail
        n = min(n, self.left)
        self.left -= n
        return b"\0" * n


def test_a_line_over_the_limit_is_reported_and_skipped_without_being_held():
    tracemalloc.start()
    try:
        source = Source("zeros", lambda: Zeros(48 * MiB, b"\n" + many(1)))
        source.max_line_bytes = MiB
        items = list(read_source(source, ReadStats()))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert read_failures(items) == [(1, "line_too_long")]
    assert "1,048,576 bytes" in items[0][1].message
    assert read_ids(items) == [(2, "0")]
    assert peak < 20 * MiB  # the queue of read chunks, not the line


def test_an_endless_line_is_reported_once_its_over_the_limit():
    source = Source("/dev/zero", lambda: Zeros())
    source.max_line_bytes = 2 * MiB
    [(line, item)] = itertools.islice(read_source(source, ReadStats()), 1)
    assert (line, item.reason) == (1, "line_too_long")


def test_gzipped_zeros_are_one_long_line_like_the_plain_ones():
    data = gzip.compress(b"\0" * (8 * MiB) + b"\n" + many(1))
    items, _ = read_bytes(data, max_line_bytes=MiB)
    assert read_failures(items) == [(1, "line_too_long")]
    assert read_ids(items) == [(2, "0")]


def test_values_at_the_limit_are_read_and_one_byte_over_is_not():
    line = orjson.dumps(track(message_id="edge"))
    over = orjson.dumps(track(message_id="edge2"))
    data = line + b"\n" + line + b"  \n" + over + b"\n" + b" " * (len(line) + 1) + b"\n"
    items, _ = read_bytes(data, max_line_bytes=len(line))
    assert read_ids(items) == [(1, "edge"), (2, "edge")]  # the limit is the value's, not the line's
    assert read_failures(items) == [(3, "line_too_long"), (4, "line_too_long")]


def test_send_reports_a_line_too_long_with_its_file_and_line(tmp_path):
    path = tmp_path / "long.ndjson"
    path.write_bytes(many(1) + b'{"pad": "' + b"x" * 5000 + b'"}\n' + many(1, start=1))
    for command in (["send", "-n", "-o", "ndjson"], ["coverage"], ["diff"]):
        args = [*command, "--max-line-bytes", "1000"]
        if command[0] == "diff":
            args += [str(EXAMPLE_CONFIG), str(EXAMPLE_CONFIG)]
        else:
            args += ["-c", str(EXAMPLE_CONFIG)]
        result = run(*args, str(path))
        assert result.exit_code in (0, 1), result.output
        if command[0] == "send":
            [failed] = [r for r in records(result.stdout) if r["outcome"] == "failed"]
            assert (failed["source"], failed["line"]) == (str(path), 2)
            assert failed["reason"] == "line_too_long"
        else:
            assert "line_too_long 1" in result.stderr


# 10. Every input is read, or said to be skipped; every line gives a record.


def test_a_fifo_in_a_walked_folder_is_skipped_with_a_warning(tmp_path):
    (tmp_path / "a.ndjson").write_bytes(many(1))
    os.mkfifo(tmp_path / "b.fifo")
    warnings = []
    sources = expand_paths([str(tmp_path)], stdin=None, warn=warnings.append)
    assert [s.name for s in sources] == [str(tmp_path / "a.ndjson")]
    assert len(warnings) == 1 and "b.fifo" in warnings[0] and "not a regular file" in warnings[0]


def test_send_on_a_folder_with_a_fifo_warns_once_and_reads_the_rest(tmp_path):
    (tmp_path / "a.ndjson").write_bytes(many(2))
    os.mkfifo(tmp_path / "b.fifo")
    result = run("send", "-n", "-o", "ndjson", "-c", str(EXAMPLE_CONFIG), str(tmp_path))
    assert result.exit_code == 0, result.output
    assert {r["line"] for r in records(result.stdout)} == {1, 2}
    assert result.stderr.count("b.fifo") == 1


def test_symlinked_folders_are_followed_once_and_loops_reported(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "x.ndjson").write_bytes(many(1))
    top = tmp_path / "top"
    (top / "sub").mkdir(parents=True)
    (top / "sub" / "y.ndjson").write_bytes(many(1))
    (top / "linked").symlink_to(real, target_is_directory=True)
    (top / "sub" / "up").symlink_to(top, target_is_directory=True)  # a loop
    warnings = []
    names = [s.name for s in expand_paths([str(top)], stdin=None, warn=warnings.append)]
    assert names == [str(top / "linked" / "x.ndjson"), str(top / "sub" / "y.ndjson")]
    assert len(warnings) == 1 and str(top / "sub" / "up") in warnings[0]


@pytest.mark.parametrize("data", [b'{"batch": []}', b"[]", b'{\n  "batch": []\n}', b"[\n]"])
def test_an_empty_batch_or_array_is_one_record(data):
    items, _ = read_bytes(data)
    assert read_failures(items) == [(1, "empty_batch")]


def test_a_bom_is_stripped_at_the_start_of_any_line():
    data = b"\xef\xbb\xbf" + many(1) + b"\xef\xbb\xbf" + many(1, start=1)  # cat a.json b.json
    items, _ = read_bytes(data)
    assert read_ids(items) == [(1, "0"), (2, "1")]
    items, _ = read_bytes(many(1) + b"\xef\xbb\xbf" + PRETTY)
    assert read_ids(items) == [(1, "0"), (2, "p")]


PRETTY = orjson.dumps(track(message_id="p"), option=orjson.OPT_INDENT_2)


@pytest.mark.parametrize("ending", [b"\r", b"\r\n", b"\n"])
def test_every_line_ending_gives_lines(ending):
    data = many(3).replace(b"\n", ending) + PRETTY.replace(b"\n", ending)
    items, stats = read_bytes(data)
    assert read_ids(items) == [(1, "0"), (2, "1"), (3, "2"), (4, "p")]
    assert stats.lines == 3 + PRETTY.count(b"\n") + 1


def test_a_crlf_split_between_reads_is_one_line_ending():
    data = many(3).replace(b"\n", b"\r\n")

    class Bytewise(io.RawIOBase):
        def __init__(self):
            self.data = data

        def readable(self):
            return True

        def read1(self, n=-1):
            head, self.data = self.data[:1], self.data[1:]
            return head

    items, stats = list(read_source(Source("in", Bytewise), st := ReadStats())), st
    assert read_ids(items) == [(1, "0"), (2, "1"), (3, "2")]
    assert (stats.lines, stats.blank_lines) == (3, 0)


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"\xfe\xff", []),  # an empty UTF-16 file: nothing to read, no line
        (b"\xff\xfe", []),
        (b"\xfe\xff\n", [(1, "invalid_utf16")]),  # an odd byte: the line it breaks counts
        (
            b"\xff\xfe" + '{"type":"track"}\n'.encode("utf-16-le") + b"x",
            [(1, "message"), (2, "invalid_utf16")],
        ),
    ],
)
def test_utf16_files_count_every_line_they_report(data, expected):
    items, stats = read_bytes(data)
    got = [(line, item.reason if isinstance(item, BadInput) else "message") for line, item in items]
    assert got == expected
    assert all(line <= stats.lines for line, _ in items)  # the summary's lines hold every record


def test_a_read_failing_after_bytes_arrived_gives_those_bytes_first(monkeypatch):
    """The bytes one read gathered are given before the failure of the read after them, which
    the next read meets: none is lost with the error (they were, whatever preceded them)."""
    import errno

    from retently_cli import readers

    read, write = os.pipe()
    try:
        os.write(write, b"more bytes")
        calls = []
        real_read = os.read

        def failing_read(fd, size):
            calls.append(size)
            if len(calls) == 1:
                return b'{"a":1}\n'
            if fd == read:
                raise OSError(errno.EIO, "Input/output error")
            return real_read(fd, size)

        reader = readers._FdReader(read)
        monkeypatch.setattr(readers.os, "read", failing_read)
        assert reader.read1(1024) == b'{"a":1}\n'
        with pytest.raises(OSError, match="Input/output"):
            reader.read1(1024)
    finally:
        os.close(read)
        os.close(write)
