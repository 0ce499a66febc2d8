"""Issue 9's shapes: concatenated values, streamed arrays, UTF-16, files that are not events."""

import gzip
import subprocess
import tracemalloc

import orjson
import pytest
from helpers import (
    EXAMPLE_CONFIG,
    RETENTLY,
    read_bytes,
    read_failures,
    read_ids,
    records,
    run,
    track,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retently_cli.readers import ReadStats, Source, expand_paths, read_source

MiB = 1 << 20
PRETTY = orjson.OPT_INDENT_2


def body(message_id, option=0):
    return orjson.dumps(track(message_id=message_id), option=option)


def send(*args):
    return run("send", "-n", "-o", "ndjson", "-c", str(EXAMPLE_CONFIG), *args)


def messages(stdout):
    """(line, message id) per message, in order (the example config gives two records each)."""
    seen = []
    for row in records(stdout):
        key = (row["line"], row["message_id"])
        if key not in seen:
            seen.append(key)
    return seen


# Concatenated values, as jq reads them


@pytest.mark.parametrize(
    "data, expected",
    [
        (body("a") + body("b"), [(1, "a"), (1, "b")]),  # two compact bodies, no newline
        (body("a") + body("b", PRETTY), [(1, "a"), (1, "b")]),  # compact, then pretty
        (body("a", PRETTY) + body("b", PRETTY), [(1, "a"), (8, "b")]),  # cat of pretty bodies
        (body("a") + b" \t" + body("b") + b"\n" + body("c"), [(1, "a"), (1, "b"), (2, "c")]),
    ],
)
def test_concatenated_values_are_all_read_at_the_line_they_start(data, expected):
    items, _ = read_bytes(data)
    assert read_ids(items) == expected
    assert not read_failures(items)


def test_a_multi_member_gzip_joining_mid_line_gives_every_message():
    data = gzip.compress(body("a")) + gzip.compress(body("b") + b"\n" + body("c"))
    items, _ = read_bytes(data)
    assert read_ids(items) == [(1, "a"), (1, "b"), (2, "c")]


def test_send_reads_cat_of_bodies_without_newlines(tmp_path):
    path = tmp_path / "bodies.json"
    path.write_bytes(body("a") + body("b", PRETTY) + body("c"))
    result = send(str(path))
    assert result.exit_code == 0, result.output
    assert messages(result.stdout) == [(1, "a"), (1, "b"), (8, "c")]


# Arrays longer than the line limit are streamed, item by item


def array_of(ids, option=0):
    return orjson.dumps([track(message_id=i) for i in ids], option=option)


@pytest.mark.parametrize("option", [0, PRETTY])
def test_an_array_longer_than_the_line_limit_is_streamed_with_each_items_line(option):
    ids = [str(i) for i in range(300)]
    data = array_of(ids, option) + b"\n" + body("after") + b"\n"
    items, stats = read_bytes(data, max_line_bytes=2000)
    lines = [n + 1 for n, row in enumerate(data.split(b"\n")) if row.lstrip().startswith(b"{")]
    if not option:
        lines = [1] * len(ids) + [2]
    assert read_ids(items) == list(zip(lines, [*ids, "after"], strict=True))
    assert not read_failures(items)
    assert stats.lines == data.count(b"\n")


def test_a_streamed_array_keeps_items_with_nested_arrays_of_objects_and_tricky_strings():
    odd = {"type": "track", "messageId": "odd", "p": [{"a": "}, {"}, {"b": "],"}] * 20}
    data = orjson.dumps([odd, track(message_id="x"), 5, odd] * 40)
    items, _ = read_bytes(data, max_line_bytes=4096)
    assert [m for _, m in read_ids(items)] == ["odd", "x", "odd"] * 40
    assert read_failures(items) == [(1, "not_an_object")] * 40


def test_a_bad_item_costs_that_item_and_a_broken_array_hands_over_to_lines():
    items_ = [body(str(i)) for i in range(100)]
    items_[50] = b'{"type": tru}'
    data = b"[\n" + b",\n".join(items_) + b"\n" + body("z") + b"\n"
    items, _ = read_bytes(data, max_line_bytes=1000)
    # the bad item, then the array without its ']': read on as lines where it is missing
    assert read_failures(items) == [(52, "invalid_json"), (102, "invalid_json")]
    assert read_ids(items) == [(i + 2, str(i)) for i in range(100) if i != 50] + [(102, "z")]


def test_a_truncated_streamed_array_gives_what_it_holds_and_one_record():
    data = array_of([str(i) for i in range(100)])[:-500]
    items, _ = read_bytes(data, max_line_bytes=1000)
    assert len(read_ids(items)) > 90
    assert read_failures(items) == [
        (1, "invalid_json"),
        (1, "invalid_json"),
    ]  # the array, the cut item


def test_an_item_over_the_limit_is_reported_and_memory_stays_bounded():
    data = b"[" + body("a") + b',{"pad": "' + b"x" * 5000 + b'"},' + body("b") + b"]\n" + body("c")
    items, _ = read_bytes(data, max_line_bytes=1000)
    assert read_failures(items) == [(1, "line_too_long")]  # the item over the limit, and only it
    assert read_ids(items) == [(1, "a"), (1, "b"), (2, "c")]


@pytest.mark.slow
def test_reading_a_large_array_holds_far_less_than_the_file(tmp_path):
    path = tmp_path / "array.json"
    one = body("m")
    count = (64 * MiB) // len(one)
    with open(path, "wb") as out:
        out.write(b"[")
        out.write(b",".join([one] * count))
        out.write(b"]")
    tracemalloc.start()
    try:
        seen = sum(1 for _ in read_source(Source(str(path), lambda: open(path, "rb")), ReadStats()))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seen == count
    assert peak < 32 * MiB  # a one-line array of 64 MiB: the 16 MiB look-ahead, queued chunks


# Encodings


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_with_a_bom_is_read_with_its_line_numbers(codec):
    text = body("é1").decode() + "\r\n\r\n" + body("2", PRETTY).decode() + "\r\n"
    bom = {"utf-16": b"", "utf-16-le": b"\xff\xfe", "utf-16-be": b"\xfe\xff"}[codec]
    data = bom + text.encode(codec)
    items, stats = read_bytes(data)
    assert read_ids(items) == [(1, "é1"), (3, "2")]
    assert stats.lines == text.count("\n")
    items, _ = read_bytes(gzip.compress(data))
    assert read_ids(items) == [(1, "é1"), (3, "2")]


def test_send_reads_a_powershell_redirect(tmp_path):
    path = tmp_path / "ps.json"
    path.write_bytes(b"\xff\xfe" + (body("a").decode() + "\r\n").encode("utf-16-le"))
    result = send(str(path))
    assert result.exit_code == 0, result.output
    assert messages(result.stdout) == [(1, "a")]
    assert "utf" not in result.stderr.lower()


# Files that are not events


NOT_EVENTS = {
    "logo.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4,
    "bundle.zip": b"PK\x03\x04" + bytes(200),
    "data.csv": b"email,event\na@b.co,Order Completed\n" * 50,
    "backup.tar.gz": gzip.compress(b"events.json" + bytes(500)),
    "README": b"# Exports\nThese are the events.\n",
}


def test_a_walk_skips_files_that_are_not_json_with_one_warning_each(tmp_path):
    for name, data in NOT_EVENTS.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "events.json").write_bytes(body("a") + b"\n")
    (tmp_path / "empty.json").write_bytes(b"")
    warnings = []
    stats = ReadStats()
    read = []
    for source in expand_paths([str(tmp_path)], stdin=None, warn=warnings.append):
        read += list(read_source(source, stats))
    assert read_ids(read) == [(1, "a")] and not read_failures(read)
    assert stats.skipped_files == len(NOT_EVENTS)
    assert sorted(w.split(":")[0] for w in warnings) == sorted(
        str(tmp_path / name) for name in NOT_EVENTS
    )


def test_send_on_a_folder_counts_skipped_files_in_the_summary(tmp_path):
    for name, data in NOT_EVENTS.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "events.json").write_bytes(body("a") + b"\n")
    result = send(str(tmp_path))
    assert result.exit_code == 0, result.output
    assert messages(result.stdout) == [(1, "a")]
    assert "5 files skipped (not JSON)" in result.stderr
    assert result.stderr.count("does not start like JSON") == 5


def test_a_file_named_on_its_own_is_read_line_by_line_even_if_not_json(tmp_path):
    path = tmp_path / "data.csv"
    path.write_bytes(b"email,event\n" + body("a") + b"\n")
    result = send(str(path))
    assert [(r["line"], r["outcome"]) for r in records(result.stdout)][:2] == [
        (1, "failed"),
        (2, "dry_run"),
    ]
    assert "skipped (not JSON)" not in result.stderr


@pytest.mark.slow
def test_a_subprocess_reads_a_streamed_array_from_stdin_and_utf16_files(tmp_path):
    path = tmp_path / "ps.json"
    path.write_bytes(b"\xff\xfe" + (body("u").decode() + "\n").encode("utf-16-le"))
    data = array_of([str(i) for i in range(50)], PRETTY)
    result = subprocess.run(
        [*RETENTLY, "send", "-n", "-o", "ndjson", "-c",
         str(EXAMPLE_CONFIG), "--max-line-bytes", "2000", "-", str(path)],
        input=data, capture_output=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    got = messages(result.stdout.decode())
    assert len(got) == 51
    assert got[:2] == [(2, "0"), (10, "1")] and got[-1] == (1, "u")


# Any concatenation of valid files gives all their messages at their start lines

ids = st.text("abcdef0123", min_size=1, max_size=6)


@st.composite
def valid_file(draw):
    """(bytes, [(line offset, messageId)]) for one file of one shape."""
    names = draw(st.lists(ids, min_size=1, max_size=4))
    shape = draw(st.sampled_from(["ndjson", "compact", "pretty", "array", "pretty_array"]))
    if shape in ("array", "pretty_array"):
        data = array_of(names, PRETTY if shape == "pretty_array" else 0)
        rows = data.split(b"\n")
        starts = [n for n, row in enumerate(rows) if row.lstrip()[:1] == b"{"]
        if shape == "array":
            starts = [0] * len(names)
        return data, list(zip(starts, names, strict=True))
    option = PRETTY if shape == "pretty" else 0
    parts, expected, line = [], [], 0
    for name in names:
        part = body(name, option) + (b"\n" if shape == "ndjson" else b"")
        expected.append((line, name))
        line += part.count(b"\n")
        parts.append(part)
    return b"".join(parts), expected


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(valid_file(), st.booleans(), st.booleans()), min_size=1, max_size=4),
    st.sampled_from([None, 300]),  # 300: arrays and pretty values over the limit stream
)
def test_concatenated_files_give_every_message_at_its_start_line(parts, limit):
    data, expected, line = b"", [], 1
    for (content, messages), newline, gzipped in parts:
        content += b"\n" if newline else b""
        expected += [(line + offset, name) for offset, name in messages]
        line += content.count(b"\n")
        data += gzip.compress(content) if gzipped else content
    if any(gz for _, _, gz in parts) and not all(gz for _, _, gz in parts):
        data = gzip.compress(b"".join(c + (b"\n" if n else b"") for (c, _), n, _ in parts))
    items, _ = read_bytes(data, max_line_bytes=limit)
    assert read_ids(items) == expected
    assert not read_failures(items)
