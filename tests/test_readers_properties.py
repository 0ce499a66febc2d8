"""Issue 8's proof: any bytes, in any file layout (concatenations of valid files included), never
give a traceback, and every line is accounted for."""

import codecs
import gzip
import io
import re

import orjson
from helpers import EXAMPLE_CONFIG, records, run
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from retently_cli.readers import BadInput, ReadStats, Source, read_source

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BOM = b"\xef\xbb\xbf"
SUMMARY = re.compile(r"Summary: ([\d,]+) lines read from ([\d,]+) sources?")

ids = st.text("abcdef0123", min_size=1, max_size=6)
messages = st.builds(
    lambda m, e: {"type": "track", "event": e, "messageId": m, "properties": {"email": "a@b.co"}},
    ids,
    st.sampled_from(["Order Completed", "Other"]),
)


def ndjson_file(items):
    return b"".join(orjson.dumps(m) + b"\n" for m in items)


def pretty_file(items):
    return b"".join(orjson.dumps(m, option=orjson.OPT_INDENT_2) + b"\n" for m in items)


def array_file(items):
    return orjson.dumps(items, option=orjson.OPT_INDENT_2) + b"\n" if items else b""


def batch_file(items):
    return orjson.dumps({"batch": items, "context": {}}) + b"\n" if items else b""


valid_files = st.tuples(
    st.sampled_from([ndjson_file, pretty_file, array_file, batch_file]),
    st.lists(messages, max_size=4),
    st.booleans(),  # a BOM
).map(lambda t: (BOM if t[2] else b"") + t[0](t[1]))
any_file = st.one_of(valid_files, st.binary(max_size=300))
endings = st.sampled_from([b"\n", b"\r\n", b"\r"])


@st.composite
def files(draw):
    """A file: valid files and arbitrary bytes concatenated, with one kind of line ending."""
    data = b"".join(draw(st.lists(any_file, min_size=1, max_size=4)))
    return data.replace(b"\n", draw(endings))


def split_lines(data: bytes) -> list[bytes]:
    rows = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    return rows[:-1] if rows[-1] == b"" else rows


def non_blank(data: bytes) -> set[int]:
    rows = split_lines(data)
    return {i + 1 for i, row in enumerate(rows) if row.replace(BOM, b"").strip()}


def read(data: bytes):
    stats = ReadStats()
    return list(read_source(Source("f", lambda: io.BytesIO(data)), stats)), stats


def check_accounted(data, items, stats):
    got = [line for line, _ in items]
    assert got == sorted(got) and all(1 <= line <= stats.lines for line in got)
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return  # read as UTF-16: its lines are not the bytes' lines (tests/test_readers_inputs.py)
    lines = non_blank(data)
    assert stats.lines == len(split_lines(data))
    got = [line for line, _ in items]
    assert got == sorted(got)
    assert set(got) <= lines
    assert bool(got) == bool(lines)


@FAST
@given(files())
def test_any_file_is_read_without_error_and_every_line_is_accounted_for(data):
    items, stats = read(data)
    check_accounted(data, items, stats)
    items, stats = read(gzip.compress(data))
    check_accounted(data, items, stats)


@FAST
@given(st.lists(valid_files, min_size=1, max_size=5), endings)
def test_concatenated_valid_files_give_every_message_and_nothing_else(parts, ending):
    data = b"".join(parts).replace(b"\n", ending)
    items, stats = read(data)
    check_accounted(data, items, stats)
    expected = [
        message["messageId"]
        for part in parts
        for value in _values(part.removeprefix(BOM))
        for message in value
    ]
    assert [item["messageId"] for _, item in items if isinstance(item, dict)] == expected
    assert not [item for _, item in items if isinstance(item, BadInput)]


def _values(part: bytes):
    """The messages of one valid file, as lists per value."""
    if part.startswith(b'{"batch"'):
        yield orjson.loads(part)["batch"]
    elif part.startswith(b"["):
        yield orjson.loads(part)
    else:
        text, pos, decoder = part.decode(), 0, __import__("json").JSONDecoder()
        while text[pos:].strip():
            value, end = decoder.raw_decode(text, pos + len(text[pos:]) - len(text[pos:].lstrip()))
            yield [value]
            pos = end


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(files(), min_size=1, max_size=4))
def test_send_on_a_folder_of_any_files_accounts_for_every_line(tmp_path_factory, contents):
    # gzip's magic starts a compressed (or truncated, corrupt_gzip) file, counted in the lines
    # it inflates to: the gzip properties test those
    assume(not any(data.startswith(b"\x1f\x8b") for data in contents))
    # and a UTF-16 byte order mark starts text whose lines are not the bytes' lines (an empty
    # UTF-16 file has none): tests/test_readers_inputs.py tests those
    assume(not any(data[:2] in (b"\xff\xfe", b"\xfe\xff") for data in contents))
    folder = tmp_path_factory.mktemp("inputs")
    for index, data in enumerate(contents):
        (folder / f"{index:02}.json").write_bytes(data)
    result = run("send", "-n", "-o", "ndjson", "-c", str(EXAMPLE_CONFIG), str(folder))
    assert result.exit_code in (0, 1), result.output
    assert "Traceback" not in result.stderr
    read = [data for data in contents if starts_like_json(data)]
    lines, sources = (int(g.replace(",", "")) for g in SUMMARY.search(result.stderr).groups())
    assert (lines, sources) == (sum(len(split_lines(d)) for d in read), len(read))
    skipped = len(contents) - len(read)
    assert (f"{skipped} file" in result.stderr) == bool(skipped)
    by_file = {}
    for record in records(result.stdout):
        by_file.setdefault(record["source"], set()).add(record["line"])
    for index, data in enumerate(contents):
        got = by_file.get(str(folder / f"{index:02}.json"), set())
        assert got <= non_blank(data)
        assert bool(got) == (bool(non_blank(data)) and starts_like_json(data))


def starts_like_json(data: bytes) -> bool:
    """Whether a walk reads the file: it starts like JSON (or is blank, or is read to be
    reported as invalid UTF-16)."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            data = codecs.getincrementaldecoder("utf-16")().decode(data).encode()
        except UnicodeDecodeError:
            return True
    lead = re.match(rb"(?:[ \t\r\n]|\xef\xbb\xbf)*", data).end()
    return data[lead : lead + 1] in (b"", b"{", b"[")
