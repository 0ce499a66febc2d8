import gzip
import io
import zlib

import orjson
import pytest
from helpers import ndjson, track, write_gz

from retently_cli.readers import BadInput, ReadStats, Source, expand_paths, read_source


def read_bytes(data: bytes, name="input"):
    stats = ReadStats()
    items = list(read_source(Source(name, lambda: io.BytesIO(data)), stats))
    return items, stats


def events(items):
    return [(line, item.get("messageId")) for line, item in items if isinstance(item, dict)]


def bad(items):
    return [(line, item.reason) for line, item in items if isinstance(item, BadInput)]


def test_ndjson_lines_keep_their_numbers_and_blank_lines_are_counted():
    data = ndjson(track(message_id="a")) + b"\n   \n" + ndjson(track(message_id="b"))
    items, stats = read_bytes(data)
    assert events(items) == [(1, "a"), (4, "b")]
    assert (stats.lines, stats.blank_lines) == (4, 2)


def test_crlf_bom_and_missing_final_newline():
    data = (
        b"\xef\xbb\xbf"
        + orjson.dumps(track(message_id="a"))
        + b"\r\n"
        + orjson.dumps(track(message_id="b"))
    )
    items, stats = read_bytes(data)
    assert events(items) == [(1, "a"), (2, "b")]
    assert stats.lines == 2


def test_malformed_lines_are_reported_with_their_line_and_reading_goes_on():
    data = (
        ndjson(track(message_id="a"))
        + b'{"type": "track", "event": "Order Com\n'
        + b"[1, 2]\n"
        + b'{"type":"track","event":"X","properties":{"email":"\xff"}}\n'
        + b"42\n"
        + ndjson(track(message_id="b"))
    )
    items, _ = read_bytes(data)
    assert events(items) == [(1, "a"), (6, "b")]
    assert bad(items) == [
        (2, "invalid_json"),
        (3, "not_an_object"),  # an array's items are messages, wherever the array is
        (3, "not_an_object"),
        (4, "invalid_utf8"),
        (5, "not_an_object"),
    ]
    messages = [item.message for _, item in items if isinstance(item, BadInput)]
    assert "not valid JSON" in messages[0] and "Order Com" in messages[0]
    assert messages[1:3] == ["array item 0 is a JSON number", "array item 1 is a JSON number"]
    assert messages[3].startswith("invalid UTF-8 at byte")
    assert messages[4] == "a JSON number, not an object"


def test_a_bad_first_line_does_not_turn_ndjson_into_a_document():
    data = b'{"type": "track", "ev\n' + ndjson(track(message_id="a"), track(message_id="b"))
    items, _ = read_bytes(data)
    assert bad(items) == [(1, "invalid_json")]
    assert events(items) == [(2, "a"), (3, "b")]


def test_gzip_is_told_by_its_bytes_not_its_name(tmp_path):
    data = ndjson(track(message_id="a"), {"type": "page"}, track(message_id="c"))
    real = write_gz(tmp_path / "real.json", data)
    fake = tmp_path / "fake.gz"
    fake.write_bytes(data)
    for path in (real, fake):
        [source] = expand_paths([str(path)], stdin=None)
        items = list(read_source(source, ReadStats()))
        assert [line for line, _ in items] == [1, 2, 3]


def test_multi_member_gzip_is_read_whole():
    data = gzip.compress(ndjson(track(message_id="a"))) + gzip.compress(
        ndjson(track(message_id="b"))
    )
    items, _ = read_bytes(data)
    assert events(items) == [(1, "a"), (2, "b")]


def test_truncated_gzip_keeps_what_was_read_and_reports_the_cut():
    whole = gzip.compress(ndjson(*(track(message_id=str(i)) for i in range(2000))))
    items, _ = read_bytes(whole[: len(whole) // 2])
    got = events(items)
    assert 0 < len(got) < 2000
    assert got == [(i + 1, str(i)) for i in range(len(got))]
    reasons = [reason for _, reason in bad(items)]
    assert reasons[-1] == "corrupt_gzip"


def test_corrupt_gzip_is_reported_not_raised():
    data = b"\x1f\x8b\x08\x00" + b"\x00" * 6 + b"garbage that is not deflate" * 10
    items, _ = read_bytes(data)
    assert bad(items) == [(1, "corrupt_gzip")]


def test_a_gzip_larger_than_a_chunk_is_read_whole_in_order():
    messages = [track(message_id=str(i), padding="x" * 500) for i in range(5000)]  # ~3 MB
    items, stats = read_bytes(gzip.compress(ndjson(*messages)))
    assert events(items) == [(i + 1, str(i)) for i in range(5000)]
    assert stats.lines == 5000


def test_binary_that_is_not_gzip_is_reported_line_by_line():
    data = zlib.compress(ndjson(*(track(message_id=str(i)) for i in range(50))))
    items, stats = read_bytes(data)
    assert not events(items)
    assert {reason for _, reason in bad(items)} <= {"invalid_json", "invalid_utf8"}
    assert len(items) == stats.lines - stats.blank_lines


PRETTY = b"""{
  "type": "track",
  "event": "Support Ticket Closed",
  "messageId": "dbg-1",
  "properties": {
    "email": "ann@example.com"
  }
}
"""


def test_a_pretty_printed_object_is_one_message():
    items, stats = read_bytes(PRETTY)
    assert events(items) == [(1, "dbg-1")]
    assert stats.lines == 8


def test_concatenated_pretty_objects_each_get_their_starting_line():
    items, _ = read_bytes(PRETTY + b"\n" + PRETTY.replace(b"dbg-1", b"dbg-2"))
    assert events(items) == [(1, "dbg-1"), (10, "dbg-2")]


def test_a_broken_pretty_document_names_the_line():
    broken = PRETTY.replace(b'"event": "Support Ticket Closed",', b'"event": "Support" Ticket",')
    items, _ = read_bytes(broken)
    assert bad(items) == [(1, "invalid_json")]
    assert "at line 3 column" in items[0][1].message


def test_arrays_pretty_or_on_one_line_give_each_item_its_line():
    items, _ = read_bytes(
        b"[\n" + b",\n".join(orjson.dumps(track(message_id=m)) for m in "ab") + b"\n]"
    )
    assert events(items) == [(2, "a"), (3, "b")]
    items, _ = read_bytes(orjson.dumps([track(message_id="a"), 7, track(message_id="b")]))
    assert events(items) == [(1, "a"), (1, "b")]
    assert bad(items) == [(1, "not_an_object")]


def test_an_empty_input_gives_nothing():
    assert read_bytes(b"")[0] == []
    assert read_bytes(b"\n\n")[0] == []


BATCH = {
    "batch": [
        {"type": "track", "event": "Order Completed", "messageId": "b1", "properties": {}},
        {"type": "identify", "messageId": "b2", "context": {"ip": "1.2.3.4", "traits": {"x": 1}}},
    ],
    "context": {"traits": {"email": "ann@example.com"}, "library": {"name": "http"}},
    "integrations": {"All": True},
}


@pytest.mark.parametrize(
    "data",
    [orjson.dumps(BATCH), orjson.dumps(BATCH, option=orjson.OPT_INDENT_2)],
    ids=["one-line", "pretty"],
)
def test_a_batch_merges_its_context_and_integrations_into_each_item(data):
    items, _ = read_bytes(data)
    first, second = (item for _, item in items)
    assert first["context"] == BATCH["context"] and first["integrations"] == {"All": True}
    # the item's own values win, the batch fills in the rest
    assert second["context"]["ip"] == "1.2.3.4"
    assert second["context"]["traits"] == {"email": "ann@example.com", "x": 1}
    assert second["context"]["library"] == {"name": "http"}


def test_pretty_batch_items_get_the_line_they_start_on():
    data = orjson.dumps(BATCH, option=orjson.OPT_INDENT_2)
    items, _ = read_bytes(data)
    text = data.decode().splitlines()
    assert [line for line, _ in items] == [
        i + 1 for i, row in enumerate(text) if row.strip() == "{" and i > 0
    ][:2]


def test_folders_are_walked_recursively_in_name_order_skipping_hidden(tmp_path):
    for name in ("b/2.gz", "b/10.gz", "a.json", ".hidden/x.json", "c/.DS_Store", "c/z.ndjson"):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"{}\n")
    names = [s.name for s in expand_paths([str(tmp_path)], stdin=None)]
    assert names == [str(tmp_path / n) for n in ("a.json", "b/10.gz", "b/2.gz", "c/z.ndjson")]


def test_no_path_or_dash_reads_stdin():
    stdin = io.BytesIO(ndjson(track()))
    [source] = expand_paths([], stdin)
    assert source.name == "-"
    assert events(list(read_source(source, ReadStats()))) == [(1, "m1")]
    assert [s.name for s in expand_paths(["-"], stdin)] == ["-"]


def test_an_unreadable_file_is_one_bad_record(tmp_path):
    source = Source(str(tmp_path / "gone.json"), lambda: open(tmp_path / "gone.json", "rb"))
    items = list(read_source(source, ReadStats()))
    assert bad(items) == [(0, "unreadable")]


def test_documents_parse_numbers_as_lines_do():
    items, _ = read_bytes(b'{\n "type": "track", "n": 123456789012345678901234567890\n}')
    assert events(items) and isinstance(items[0][1]["n"], float)
    items, _ = read_bytes(b'{\n "type": "track", "n": NaN\n}')
    assert bad(items) == [(1, "invalid_json")]
    assert "NaN is not JSON" in items[0][1].message


def test_documents_nested_absurdly_deep_are_reported_not_crashed_on():
    document = b"[\n" + b"[" * 5000 + b"]" * 5000 + b"\n]"
    assert bad(read_bytes(document)[0]) == [(1, "too_deeply_nested")]
    pretty = b'{\n "type": "track",\n "p": ' + b'{"a": ' * 100 + b"1" + b"}" * 100 + b"\n}"
    assert bad(read_bytes(pretty)[0]) == [(1, "too_deeply_nested")]
