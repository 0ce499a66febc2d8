"""Issue 9's rest: batch documents streamed, long values streamed wherever they come, and values
over the limit costing one record each. The oracle is the same input read whole (a high limit)."""

import gzip
import io
import subprocess
import sys
import textwrap

import orjson
import pytest
from click.testing import CliRunner
from helpers import EXAMPLE_CONFIG, records, track

from retently_cli.cli import cli
from retently_cli.readers import BadInput, ReadStats, Source, read_source

MiB = 1 << 20
PRETTY = orjson.OPT_INDENT_2
LOW = 2000  # a --max-line-bytes that every document below is far over


def read(data: bytes, limit: int = 64 * MiB):
    stats = ReadStats()
    source = Source("input", lambda: io.BytesIO(data), max_line_bytes=limit)
    return list(read_source(source, stats)), stats


def bad(items):
    return [(line, item.reason) for line, item in items if isinstance(item, BadInput)]


def ids(items):
    return [(line, item["messageId"]) for line, item in items if isinstance(item, dict)]


def events(count, start=0):
    return [
        {**track(message_id=str(i), n=i), "context": {"page": {"url": f"/{i}"}}}
        for i in range(start, start + count)
    ]


SHARED = {
    "context": {"library": {"name": "analytics-node"}, "ip": "10.0.0.1", "page": {"url": "/"}},
    "integrations": {"All": False},
}


def batch_doc(items, option=0, shared_at="after"):
    """A batch body with its shared keys before the array, after it (as analytics-node writes
    them), or split around it."""
    before = {"before": SHARED, "after": {}, "split": {"integrations": SHARED["integrations"]}}
    after = {"before": {}, "after": SHARED, "split": {"context": SHARED["context"]}}
    stamps = {"timestamp": "2024-05-01T10:00:00.000Z", "sentAt": "2024-05-01T10:00:01.000Z"}
    doc = {**before[shared_at], "batch": items, **after[shared_at], **stamps}
    return orjson.dumps(doc, option=option)


def assert_streamed_like_whole(data, limit=LOW):
    """Read with a low limit, every record is the one the whole-document read gives."""
    whole, whole_stats = read(data)
    streamed, stats = read(data, limit)
    assert not bad(whole)
    assert streamed == whole
    assert stats.lines == whole_stats.lines
    return streamed


# (a) {"batch": [...]} documents over the limit are streamed


@pytest.mark.parametrize("option", [0, PRETTY])
@pytest.mark.parametrize("shared_at", ["before", "after", "split"])
def test_a_batch_document_over_the_limit_gives_every_item_with_the_shared_keys(option, shared_at):
    data = batch_doc(events(200), option, shared_at) + b"\n"
    items = assert_streamed_like_whole(data)
    assert len(items) == 200
    for _, item in items:
        assert item["context"]["ip"] == "10.0.0.1"
        own = {"url": f"/{item['properties']['n']}"}
        assert item["context"]["page"] == own  # the item's own value wins
        assert item["integrations"] == {"All": False}


def test_a_streamed_batch_reports_bad_items_once_each_and_an_empty_batch():
    bodies = [orjson.dumps(e) for e in events(100)]
    bodies[10] = b"5"
    bodies[20] = b'{"pad": "' + b"x" * 5000 + b'"}'
    data = b'{"sentAt": null, "batch": [' + b",".join(bodies) + b'], "context": {"ip": "1"}}'
    items, _ = read(data + b'\n{"batch": []}\n' + orjson.dumps(track(message_id="z")), LOW)
    assert bad(items) == [(1, "not_an_object"), (1, "line_too_long"), (2, "empty_batch")]
    assert [i for _, i in ids(items)] == [str(i) for i in range(100) if i not in (10, 20)] + ["z"]
    assert all(item["context"]["ip"] == "1" for _, item in items[:5])


def test_a_truncated_batch_document_gives_what_it_holds_and_one_record():
    data = batch_doc(events(100))[:-3000]
    items, _ = read(data, LOW)
    assert 70 < len(ids(items)) < 100
    assert bad(items)[0] == (1, "invalid_json")


# (b) long arrays and batch documents stream wherever they come in the input


@pytest.mark.parametrize(
    "shape",
    [
        lambda: orjson.dumps(events(150)),
        lambda: orjson.dumps(events(150), option=PRETTY),
        lambda: batch_doc(events(150)),
        lambda: batch_doc(events(150), PRETTY),
    ],
)
@pytest.mark.parametrize("joint", [b"\n", b"", b"  "])
def test_a_long_value_after_other_values_is_streamed(shape, joint):
    small = b"".join(orjson.dumps(track(message_id=f"s{i}")) + b"\n" for i in range(3))
    data = small + orjson.dumps(track(message_id="t")) + joint + shape() + b"\n" + small
    items = assert_streamed_like_whole(data)
    assert len(items) == 3 + 1 + 150 + 3


def test_a_long_value_after_more_than_a_chunk_of_lines_is_streamed():
    small = b"".join(orjson.dumps(track(message_id=f"s{i}")) + b"\n" for i in range(15_000))
    assert len(small) > 1.4 * MiB  # the reader's chunks are 1 MiB: lines are put back mid-chunk
    data = small + batch_doc(events(100), PRETTY) + orjson.dumps(events(100), option=PRETTY)
    more = small[: small.index(b"\n", 1000) + 1]
    items = assert_streamed_like_whole(data + b"\n" + more)
    assert len(items) == 15_000 + 200 + more.count(b"\n")


def test_cat_of_compact_bodies_on_one_long_line_reads_every_body():
    data = b"".join(batch_doc(events(3, start=i)) for i in range(200))  # no newline at all
    items = assert_streamed_like_whole(data)
    assert len(items) == 600


# (d) every value is read, or costs one record when it is truly over the limit


def test_cat_of_pretty_bodies_over_the_limit_gives_one_record_per_body_not_per_line():
    big = track(message_id="big", blob=["x" * 50] * 100)  # one event of ~6 KB
    data = b"".join(orjson.dumps(big, option=PRETTY) for _ in range(5))
    items, stats = read(data + b"\n" + orjson.dumps(track(message_id="after")) + b"\n", LOW)
    starts = [1 + n * orjson.dumps(big, option=PRETTY).count(b"\n") for n in range(5)]
    assert bad(items) == [(line, "line_too_long") for line in starts]
    assert ids(items) == [(stats.lines, "after")]


def test_pretty_bodies_with_a_line_over_the_limit_give_one_record_each():
    big = orjson.dumps(track(message_id="big", blob="z" * 5000), option=PRETTY)
    data = big + big + b"\n" + orjson.dumps(track(message_id="after")) + b"\n"
    items, stats = read(data, LOW)
    second = big.count(b"\n") + 1  # it starts on the line where the first one ends
    assert bad(items) == [(1, "line_too_long"), (second, "line_too_long")]
    assert ids(items) == [(stats.lines, "after")] and stats.lines == data.count(b"\n")


def test_cat_of_pretty_batch_bodies_over_the_limit_reads_every_item():
    data = b"".join(batch_doc(events(30), PRETTY) for _ in range(4))
    items = assert_streamed_like_whole(data)
    assert len(items) == 120


def test_a_compact_value_over_the_limit_costs_one_record_and_its_neighbours_are_read():
    big = orjson.dumps(track(message_id="big", blob="y" * 5000))
    data = orjson.dumps(track(message_id="a")) + big + orjson.dumps(track(message_id="b")) + b"\n"
    items, _ = read(data, LOW)
    assert bad(items) == [(1, "line_too_long")]
    assert ids(items) == [(1, "a"), (1, "b")]


# Memory: a batch document far larger than the limit is read in flat memory, as NDJSON is

CHILD = textwrap.dedent(
    """
    import resource, subprocess, sys
    done = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sys.stderr.buffer.write(done.stderr)
    sys.stdout.buffer.write(done.stdout)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    sys.stderr.write(f"\\nPEAK {peak}\\n")
    """
)


def send_measured(path, limit):
    """(records without their source, peak RSS in bytes) of a dry run over ``path``; measured in
    a fresh process whose only child is the CLI, so no earlier child's peak is counted."""
    command = [sys.executable, "-m", "retently_cli", "send", "-n", "-o", "ndjson", "-c",
               str(EXAMPLE_CONFIG), "--max-line-bytes", str(limit), str(path)]  # fmt: skip
    done = subprocess.run([sys.executable, "-c", CHILD, *command], capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    peak = int(done.stderr.rsplit(b"PEAK ", 1)[1])
    rows = records(done.stdout)
    for row in rows:
        row.pop("source", None)
    return rows, peak


@pytest.mark.slow
def test_a_large_batch_document_is_read_in_flat_memory_like_the_same_events_as_ndjson(tmp_path):
    shared_after = {"context": {"library": {"name": "analytics-node"}, "ip": "10.0.0.1"}}
    items = [
        {**track(message_id=f"m{i}", email=f"u{i}@x.co", note="n" * 450), "context": {"page": {}}}
        for i in range(60_000)
    ]
    doc = tmp_path / "batch.json"
    doc.write_bytes(b'{"batch":[' + b",".join(map(orjson.dumps, items)) + b"]," +
                    orjson.dumps(shared_after)[1:])  # fmt: skip
    merged = tmp_path / "events.ndjson"
    with open(merged, "wb") as out:
        for item in items:
            item["context"]["library"] = shared_after["context"]["library"]
            item["context"]["ip"] = "10.0.0.1"
            out.write(orjson.dumps(item) + b"\n")
    size = doc.stat().st_size
    assert size > 20 * MiB
    got, peak = send_measured(doc, 64 * 1024)
    want, ndjson_peak = send_measured(merged, 64 * 1024)
    for row in got + want:
        row.pop("line")  # one line in the document, one per event in the NDJSON
    assert got == want and len(got) >= len(items)
    # the tool's own memory is that of the NDJSON run; the document adds far less than its size
    # (read whole, it took about ten times its size)
    assert peak - ndjson_peak < size / 3


def test_send_streams_a_long_batch_from_stdin_and_from_gzip_with_the_keys_after_its_array(
    tmp_path,
):
    data = batch_doc(events(300), PRETTY)
    path = tmp_path / "body.json.gz"
    path.write_bytes(gzip.compress(data))
    args = ["send", "-n", "-o", "ndjson", "-c", str(EXAMPLE_CONFIG), "--max-line-bytes", "2000"]
    for where, stdin in (("-", data), (str(path), None)):
        result = CliRunner().invoke(cli, [*args, where], input=stdin)
        assert result.exit_code == 0, result.output
        rows = records(result.stdout)
        assert {row["message_id"] for row in rows} == {str(i) for i in range(300)}
        assert "failed" not in {row["outcome"] for row in rows}
        # the line of each item is where it starts in the pretty body
        starts = [n + 1 for n, text in enumerate(data.split(b"\n")) if text == b"    {"]
        assert sorted({row["line"] for row in rows}) == starts


@pytest.mark.parametrize("key", [b'"a\\x"', b'"a\x01"', b"a", b'"a" 1'])
def test_a_bad_key_in_a_long_document_is_one_record_and_reading_goes_on(key):
    body = batch_doc(events(50))
    data = b"{" + key + b": 1, " + body[1:] + b"\n" + orjson.dumps(track(message_id="after"))
    items, _ = read(data, LOW)
    assert bad(items)[0] == (1, "invalid_json")
    assert ids(items)[-1] == (2, "after")


# (e) items are parsed many at a time; what such a run cannot take is read item by item


def braced_events(count):
    """Events whose strings hold what looks like the end of one item and the start of another."""
    notes = ["},{", '},{"a": 1}', "} , {", "}]", '"},{"']
    out = events(count)
    for i in range(0, count, 7):
        out[i]["properties"]["note"] = notes[i % len(notes)]
    return out


@pytest.mark.parametrize("limit", [LOW, 256 * 1024])
@pytest.mark.parametrize(
    "shape",
    [
        lambda: orjson.dumps(braced_events(8000)),
        lambda: orjson.dumps(braced_events(8000), option=PRETTY),
        lambda: batch_doc(braced_events(8000)),
        lambda: batch_doc(braced_events(8000), PRETTY),
    ],
)
def test_items_with_braces_in_their_strings_are_read_as_whole_reads_do(shape, limit):
    data = shape() + b"\n" + orjson.dumps(track(message_id="after")) + b"\n"
    assert len(data) > max(MiB, limit)  # many runs, over more than one of the reader's chunks
    items = assert_streamed_like_whole(data, limit)
    assert len(items) == 8001


def test_items_that_are_not_objects_among_many_cost_one_record_each_where_they_are():
    values = [*events(900)]
    for index, odd in ((0, 7), (300, "},{"), (301, None), (650, []), (899, "x")):
        values[index] = odd
    data = orjson.dumps(values) + b"\n"
    streamed, _ = read(data, LOW)
    assert streamed == read(data)[0]  # read whole, a line holding an array says the same
    assert [item.message for _, item in streamed if isinstance(item, BadInput)] == [
        f"array item {index} is a JSON {kind}"
        for index, kind in ((0, "number"), (300, "string"), (301, "null"), (650, "array"),
                            (899, "string"))
    ]  # fmt: skip
    pretty = orjson.dumps(values, option=PRETTY)
    streamed, stats = read(pretty, LOW)
    rows = pretty.split(b"\n")
    tops = [n + 1 for n, row in enumerate(rows) if row[:2] == b"  " and row[2:3] != b" "]
    lines = [n for n in tops if rows[n - 1][2:3] not in (b"}", b"]")]  # not a closing bracket
    assert [line for line, _ in streamed] == lines
    assert stats.lines == pretty.count(b"\n") + 1


@pytest.mark.parametrize("option", [0, PRETTY])
def test_an_item_over_the_limit_among_many_costs_one_record_at_its_line(option):
    values = events(600)
    values[333]["properties"]["pad"] = "p" * 5000
    data = orjson.dumps(values, option=option) + b"\n"
    whole, _ = read(data)
    streamed, stats = read(data, LOW)
    assert streamed[333] == (whole[333][0], streamed[333][1])
    assert bad(streamed) == [(whole[333][0], "line_too_long")]
    assert streamed[:333] + streamed[334:] == whole[:333] + whole[334:]
    assert stats.lines == data.count(b"\n")


@pytest.mark.parametrize("joint", [b",", b", \n  "])
def test_an_object_item_before_a_long_string_item_is_read(joint):
    small = [orjson.dumps(track(message_id=str(i))) for i in range(3)]
    data = b"[" + joint.join([small[0], orjson.dumps("s" * 5000), small[1], b'"x"', small[2]])
    items, _ = read(data + b"]\n", LOW)
    step = 1 if b"\n" in joint else 0
    what = ["0", "line_too_long", "1", "not_an_object", "2"]
    got = [
        (n, item.reason if isinstance(item, BadInput) else item["messageId"]) for n, item in items
    ]
    assert got == [(1 + index * step, text) for index, text in enumerate(what)]


# (f) in a plain file, the keys after a batch's array are read ahead, and its items go out as
# they are read, not spooled


def read_file(tmp_path, data: bytes, limit: int = LOW, name: str = "body.json"):
    path = tmp_path / name
    path.write_bytes(data)
    stats = ReadStats()
    source = Source(str(path), lambda: open(path, "rb"), path.stat().st_size, limit)
    return list(read_source(source, stats)), stats


def tricky_strings(count, quote: bool):
    """Events whose strings hold brackets, nothing at all, and (escaped) quotes if ``quote``,
    which a look ahead that counts brackets must not be misled by."""
    notes = ["}]", "]},", "", "[[[", "}}}]]]", "},{", "}]}, {"]
    out = events(count)
    for i in range(0, count, 5):
        out[i]["properties"]["odd"] = notes[i % len(notes)] + ('"' if quote else "")
        out[i]["properties"]["empty"] = ["", "", {"": ""}]
    return out


@pytest.mark.parametrize("option", [0, PRETTY])
@pytest.mark.parametrize("shared_at", ["before", "after", "split"])
@pytest.mark.parametrize("escaped", [False, True])
def test_a_batch_in_a_file_gives_what_a_whole_read_gives(tmp_path, option, shared_at, escaped):
    data = batch_doc(tricky_strings(8000, escaped), option, shared_at) + b"\n"
    assert len(data) > MiB and (b"\\" in data) == escaped  # a backslash: no look ahead
    whole, whole_stats = read(data)
    streamed, stats = read_file(tmp_path, data)
    assert not bad(whole) and len(whole) == 8000
    assert streamed == whole and stats.lines == whole_stats.lines


@pytest.mark.parametrize("option", [0, PRETTY])
def test_batches_one_after_another_in_a_file_each_get_their_own_keys(tmp_path, option):
    first = orjson.dumps({"batch": events(3000), "context": {"ip": "1"}}, option=option)
    second = orjson.dumps({"batch": events(3000, 3000), "context": {"ip": "2"}}, option=option)
    empty = orjson.dumps({"batch": [], "context": {"ip": "3"}})
    data = first + second + b"\n" + empty + b"\n" + first + b"\n"
    whole, _ = read(data)
    streamed, _ = read_file(tmp_path, data)
    assert streamed == whole
    assert [item["context"]["ip"] for _, item in streamed if isinstance(item, dict)] == (
        ["1"] * 3000 + ["2"] * 3000 + ["1"] * 3000
    )
    assert bad(streamed) == [(data.count(b"\n", 0, data.index(empty)) + 1, "empty_batch")]


def test_a_truncated_batch_in_a_file_gives_what_it_holds_and_one_record(tmp_path):
    data = batch_doc(events(8000))
    for cut in (len(data) - 3000, len(data) - 30, len(data) - 1):
        streamed, _ = read_file(tmp_path, data[:cut])
        assert streamed == read(data[:cut], LOW)[0]  # as from stdin: no keys after the array
        assert 7900 < len(ids(streamed)) <= 8000
        assert bad(streamed)[-1][1] == "invalid_json"


def test_the_items_of_a_batch_in_a_file_come_out_as_it_is_read(tmp_path):
    data = batch_doc(events(40_000))  # about 6 MiB
    path = tmp_path / "body.json"
    path.write_bytes(data)
    stats = ReadStats()
    size = 1  # said small, so that it is read in this thread: bytes_read is then what was used
    records = read_source(Source(str(path), lambda: open(path, "rb"), size, LOW), stats)
    line, first = next(records)
    assert first["messageId"] == "0" and first["context"]["ip"] == "10.0.0.1"
    assert stats.bytes_read < len(data) / 2
    records.close()
