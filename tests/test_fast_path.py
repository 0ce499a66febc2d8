"""The fast path for events skipped at first sight writes exactly what the plain path writes."""

import orjson
import pytest
from click.testing import CliRunner
from helpers import EXAMPLE_CONFIG, track

from retently_cli.cli import cli
from retently_cli.run import SendJob

MIXED = [
    orjson.dumps(track("Product Viewed", "a1")),
    orjson.dumps(track("Product Viewed", "a1")),  # the same messageId again, unmapped
    orjson.dumps(track("Order Completed", "m1")),
    orjson.dumps(track("Order Completed", "m1")),  # a duplicate that is mapped
    orjson.dumps(track("order completed", "n1")),  # near misses
    orjson.dumps(track("Order Completed ", "n2")),
    orjson.dumps(track("Order Complted", None)),
    orjson.dumps(track("Signed Up", 12)),  # messageIds that are not strings
    orjson.dumps(track("Signed Up", 12.5)),
    orjson.dumps(track("Signed Up", {"b": 1, "a": [2]})),
    orjson.dumps(track("Signed Up", [])),
    orjson.dumps(track("Signed Up", True)),
    orjson.dumps(track("Signed Up", "")),
    orjson.dumps(track('quote " and \\ and \u2028 and é', "q1")),
    orjson.dumps(track("\x1b[31mred", "c1")),
    orjson.dumps(track("", "e1")),  # a track with no name
    orjson.dumps({"type": "track", "messageId": "e2"}),
    orjson.dumps({"event": "Product Viewed", "messageId": "t1"}),  # no type: still a track
    orjson.dumps({"type": "identify", "event": "Product Viewed", "messageId": "i1"}),
    orjson.dumps({"type": "page", "name": "Home", "messageId": "p1"}),
    orjson.dumps({"type": "Track", "event": "Product Viewed", "messageId": "T1"}),
    orjson.dumps({"type": "track", "event": 7, "messageId": "x1"}),
    orjson.dumps({"type": "", "event": "Product Viewed", "messageId": "y1"}),
    orjson.dumps({"type": 5, "event": "Product Viewed", "messageId": "y2"}),
    orjson.dumps({"type": None, "event": "Product Viewed", "messageId": "y3"}),
    orjson.dumps({"type": "screen", "event": ["a"], "messageId": 3}),
    orjson.dumps({"type": "group" * 100, "event": "g" * 300}),
    orjson.dumps(track("Product Viewed" * 30, "long")),
    orjson.dumps({"type": "identify", "source": "x", "line": 1}),
    orjson.dumps({"source": "a.ndjson", "line": 3, "event": "Product Viewed"}),  # our own record
    orjson.dumps({**track("Product Viewed", "d1"), "_retently": {"reason": "x"}}),
    b'{"type":"track","event":"Product Viewed","messageId":"h1",'
    b'"n":123456789012345678901234567890}',
    b'{"type":"track","event":"Product Viewed","messageId":18446744073709551616}',
    b'{"type":"track","event":"Product Viewed","messageId":1e400}',
    b'{"type":"track","event":"Product Viewed","messageId":"u1","bad":"\xff\xfe"}',
    b'{"type":"track","event":"Product \xc3(","messageId":"u2"}',
    b'{"type":"track","event":"Product Viewed","event":"Order Completed","messageId":"k1",'
    b'"properties":{"email":"kim@example.com"}}',
    b'{"type":"track","event":"Product Viewed","messageId":"broken"',
    b"not json at all",
    b"",
    b"[1, 2]",
    b"[]",
    orjson.dumps({"batch": [track("Product Viewed", "b1"), track("Order Completed", "b2"), 3]}),
    orjson.dumps({"batch": [], "context": {}}),
    b'{\n  "type": "track",\n  "event": "Product Viewed",\n  "messageId": "pp1"\n}',
    orjson.dumps(track("Product Viewed", "z" * 5000)),
    *(  # what a partial decode (skipping the members it does not read) might accept
        b'{"type":"track","event":"Product Viewed","messageId":"s%d","x":%s}' % (n, value)
        for n, value in enumerate(
            [
                b"1e400",
                b"-1E+400",
                b"1.5e0309",
                b"[1e999]",
                b'{"y":2e308}',
                b"1" + b"0" * 400,
                b"-" + b"9" * 320 + b".5",
                b"1" + b"0" * 250 + b"e60",
                b"1e-400",
                b"1e308",
                b"NaN",
                b"Infinity",
                b"-Infinity",
                b'"\\ud800"',
                b'"\\udc00"',
                b'"\\ud800\\u0041"',
                b'"\\ud83d\\ude00"',
                b'"a\\u0000b"',
                b'"a\x00b"',
                b'"\xed\xa0\x80"',
                b'"\xc0\xaf"',
                b'"\xf4\x90\x80\x80"',
                b'"\x80"',
                b'"Zo\xc3\xab"',
                b"[" * 1100 + b"]" * 1100,
                b"[" * 1000 + b"]" * 1000,
                b'{"a":' * 600 + b"1" + b"}" * 600,
                b"01",
                b"1.",
                b"[1,]",
                b"tru",
                b"1} x",
                b"1}{}",
                b'1,"x\xff":2',
                b'1,"batch":[]',
                b'1,"b\\u0061tch":[{"type":"x"}]',
                b'1,"type":"identify"',
                b'1,"event":"Order Completed"',
                b'1,"messageId":7',
                b'1,"messageId":null',
                b'1,"type":null',
                b'1,"event":null',
                b'1,"type":"tr\\u0061ck"',
                b'1,"event":"Order Complete\\u0064"',
                b'1,"messageId":"\\u0000"',
            ]
        )
    ),  # fmt: skip
    b'{"type":"identify","event":"x\xff","messageId":"s90"}',
    b'{"type":"page","event":"Product Viewed","messageId":"s91"}  ',
    b'\xef\xbb\xbf{"type":"page","messageId":"s92"}',
    b'{"type":"page","messageId":"s93"} {"type":"page","messageId":"s94"}',
    b'{"type":"track","event":"Product Viewed","messageId":"s95"}\t\x0c',
    b'{"type":"track","messageId":"s96","event":"Product Viewed","event":"Order Completed"}',
    b'{"type":"track","messageId":"s97","event":"Order Completed","event":"Product Viewed"}',
    b'{"type":"track","messageId":"s98","type":"page"}',
    b'{"type":"track","event":"Product Viewed","messageId":"s99","hex":"ab5e019","n":5e-019}',
]


def _run(monkeypatch, fast: bool, args: list[str], data: bytes):
    monkeypatch.setattr(SendJob, "fast_path", fast)
    return CliRunner().invoke(cli, ["send", "-n", "-c", str(EXAMPLE_CONFIG), *args], input=data)


@pytest.mark.parametrize(
    "args", [["-o", "ndjson"], ["--all-rows"], [], ["-o", "ndjson", "--report", "-"]]
)
def test_the_fast_path_gives_the_plain_paths_records_byte_for_byte(monkeypatch, args):
    data = b"\n".join(MIXED) + b"\n"
    plain = _run(monkeypatch, False, [*args, "-"], data)
    fast = _run(monkeypatch, True, [*args, "-"], data)
    assert plain.exit_code == fast.exit_code == 1  # the malformed lines
    assert fast.stdout_bytes == plain.stdout_bytes
    assert fast.stderr_bytes == plain.stderr_bytes
    if "ndjson" in args:
        records = [orjson.loads(line) for line in fast.stdout_bytes.splitlines()]
        assert len(records) >= 50
        assert any(r["reason"] == "no_campaign" and r["detail"] for r in records)


def test_the_fast_path_holds_for_files_and_for_names_beyond_those_remembered(monkeypatch, tmp_path):
    monkeypatch.setattr("retently_cli.skipped_records._TAILS_KEPT", 2)
    monkeypatch.setattr("retently_cli.first_sight._JUDGED_KEPT", 2)
    names = [f"Name {n}" for n in range(6)] * 2
    path = tmp_path / 'odd "name" \u00e9.ndjson'
    path.write_bytes(b"\n".join([*(orjson.dumps(track(n, n)) for n in names), *MIXED]))
    other = tmp_path / "other.ndjson"
    other.write_bytes(b"\n".join(MIXED[::-1]))
    inputs = [str(path), str(other), str(path)]
    plain = _run(monkeypatch, False, ["-o", "ndjson", *inputs], b"")
    fast = _run(monkeypatch, True, ["-o", "ndjson", *inputs], b"")
    assert fast.stdout_bytes == plain.stdout_bytes
    assert fast.stderr_bytes == plain.stderr_bytes


def test_the_first_sight_remembers_a_bounded_number_of_names(monkeypatch):
    from retently_cli.first_sight import FirstSight

    monkeypatch.setattr("retently_cli.first_sight._JUDGED_KEPT", 3)
    sight = FirstSight(["Order Completed"])
    events = [track(f"Name {n}", str(n)) for n in range(10)] * 2
    answers = [sight.skipped(event) for event in events]
    assert len(sight._judged) == 3  # a log of a million distinct names holds no more
    fresh = [FirstSight(["Order Completed"]).skipped(event) for event in events]
    assert answers == fresh
    assert answers[0] == ("0", "Name 0", "no_campaign", None, None)
    assert sight.skipped(track("Order Complted", "m")) == (
        "m", "Order Complted", "no_campaign", "did you mean 'Order Completed'?",
        "Order Completed",
    )  # fmt: skip
    assert sight.skipped(track("Order Completed", "m")) is None


def test_the_near_miss_hints_remember_a_bounded_number_of_names(monkeypatch):
    from retently_cli.first_sight import NearMisses

    monkeypatch.setattr("retently_cli.first_sight._HINT_CACHE_LIMIT", 3)
    near = NearMisses(["Order Completed", "Signed Up"])
    names = ["Order Complted", "signed up", "Nothing", "Order Completd", "Signed  Up"] * 2
    hints = [near.hint(name) for name in names]
    assert len(near._cache) == 3  # every process of a run of unique names holds no more
    assert hints == [NearMisses(["Order Completed", "Signed Up"]).hint(name) for name in names]
    assert hints[:5] == ["Order Completed", "Signed Up", None, "Order Completed", "Signed Up"]


def test_diff_passes_over_what_neither_config_surveys_with_the_same_result(monkeypatch, tmp_path):
    from retently_cli.diffing import Differ

    new = tmp_path / "new.yaml"
    text = EXAMPLE_CONFIG.read_text()
    new.write_text(text.replace('"Onboarding Finished"', '"Onboarding Finished, Product Viewed"'))
    data = b"\n".join(MIXED) + b"\n"
    results = []
    for fast in (False, True):
        monkeypatch.setattr(Differ, "fast_path", fast)
        for output in ("table", "ndjson"):
            args = ["diff", "-o", output, str(EXAMPLE_CONFIG), str(new), "-"]
            results.append(CliRunner().invoke(cli, args, input=data))
    plain, fast = results[:2], results[2:]
    for before, after in zip(plain, fast, strict=True):
        assert after.exit_code == before.exit_code
        assert after.stdout_bytes == before.stdout_bytes
        assert after.stderr_bytes == before.stderr_bytes
    assert b"Product Viewed" in fast[1].stdout_bytes
