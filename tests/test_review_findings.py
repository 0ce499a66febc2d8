"""What a second reading of issue 8's fixes found: defects reproduced, each with its test."""

import json
import os
import subprocess

import pytest
from helpers import EXAMPLE_CONFIG, RETENTLY, ROOT, ndjson, records, run, send, track

from retently_cli.config import parse_config
from retently_cli.matching import Matcher


def wide_config(tmp_path):
    config = tmp_path / "wide.yaml"
    config.write_text(
        'campaigns:\n  "61ab2c9d8e7f6a0011bc45de": "Support Ticket Closed"\n'
        "email_paths: [properties.email, email]\n"
    )
    return config


def ticket(i):
    return track("Support Ticket Closed", message_id=f"t{i}", email=f"u{i}@example.com")


def test_diff_records_read_back_survey_nobody(tmp_path):
    config = wide_config(tmp_path)
    other = tmp_path / "other.yaml"
    other.write_text('campaigns:\n  "63cd4e5f6a7b8c0022de56ef": "Support Ticket Closed"\n'
                     "email_paths: [properties.email, email]\n")  # fmt: skip
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "ev.ndjson").write_bytes(ndjson(*(ticket(i) for i in range(4))))
    diff = run("diff", "-o", "ndjson", str(config), str(other), str(logs))
    assert diff.stdout.strip()
    (logs / "changes.ndjson").write_text(diff.stdout)
    got = records(send("-n", "-o", "ndjson", str(logs), config=config).stdout)
    assert sum(r["outcome"] == "dry_run" for r in got) == 4


@pytest.mark.slow
def test_dead_letters_fed_back_are_never_lost_to_a_filter_or_a_dry_run(fake_env, tmp_path):
    fake_env.refused_emails = {f"u{i}@example.com" for i in range(10)}
    dead = tmp_path / "failed.ndjson"
    send("--failed", str(dead), "-", input=ndjson(*(ticket(i) for i in range(10))))
    assert len(dead.read_bytes().splitlines()) == 10
    fake_env.refused_emails = set()
    dry = send("-n", "--failed", str(dead), str(dead))
    assert len(dead.read_bytes().splitlines()) == 10, dry.stderr
    limited = send("--limit", "3", "--failed", str(dead), str(dead))
    assert fake_env.survey_count() == 3
    kept = (tmp_path / "failed.ndjson.new").read_bytes()
    assert len(dead.read_bytes().splitlines()) == 10  # kept whole: 7 were never tried
    assert "left as it was" in limited.stderr
    done = send("--failed", str(dead), str(dead))
    assert done.exit_code == 0 and fake_env.survey_count() == 10
    assert dead.read_bytes() == b"" and kept == b""  # the limited run failed nothing


@pytest.mark.slow
def test_an_output_that_is_also_stdin_is_refused(tmp_path):
    events = tmp_path / "g.ndjson"
    events.write_bytes(ndjson(ticket(1), ticket(2)))
    with open(events, "rb") as stdin:
        done = subprocess.run(
            [*RETENTLY, "send", "-n", "-q", "-c", str(EXAMPLE_CONFIG),
             "--report", str(events)],
            stdin=stdin, capture_output=True, cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert b"also an input" in done.stderr
    assert events.read_bytes() == ndjson(ticket(1), ticket(2))


def test_a_lone_surrogate_in_a_document_is_one_bad_record_not_a_stopped_run(tmp_path):
    source = tmp_path / "sur.json"
    bad = b'{"type":"track","event":"Order Completed","messageId":"s",\n'
    bad += b' "properties":{"email":"a@example.com","x":"\\ud800"}}\n'
    source.write_bytes(bad + ndjson(track(message_id="ok")))
    result = send("-n", "-o", "ndjson", str(source))
    got = records(result.stdout)
    assert "internal error" not in result.stderr
    assert [r["outcome"] for r in got if r["line"] == 1] == ["failed"]
    assert sum(r["outcome"] == "dry_run" for r in got) == 2


def test_a_deep_event_with_an_odd_message_id_does_not_stop_a_run_with_a_ledger(tmp_path):
    deep = {}
    node = deep
    for _ in range(300):
        node["a"] = {}
        node = node["a"]
    message = {**track(message_id=None), "messageId": 1.5, "properties": {
        "email": "a@example.com", "deep": deep}}  # fmt: skip
    data = (json.dumps(message) + "\n").encode() + ndjson(track(message_id="ok"))
    ledger = tmp_path / "l.db"
    result = send("-n", "--ledger", str(ledger), "-o", "ndjson", "-", input=data)
    assert "internal error" not in result.stderr, result.stderr
    got = records(result.stdout)
    assert {r["message_id"] for r in got} == {"1.5", "ok"}  # both read, each reported


def test_email_check_is_linear():
    matcher = Matcher(parse_config('campaigns:\n  "c1": "E"\n'))
    email = "a@" + "b." * 200_000 + "@"
    event = {"type": "track", "event": "E", "messageId": "m", "properties": {"email": email}}
    assert matcher.decide(event)[0].reason == "invalid_email"  # would take minutes if quadratic
    for good in ("a@b.co", "a.b@c.d.e"):
        event["properties"]["email"] = good
        assert matcher.decide(dict(event, messageId=good))[0].reason is None
    for bad in ("a@b.", "a@.b", "@b.c", "a@b", "a b@c.d", "a@@b.c", "a@b.c\x1b"):
        event["properties"]["email"] = bad
        assert matcher.decide(dict(event, messageId=bad))[0].reason == "invalid_email", bad


def test_warnings_escape_control_characters(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "ev.ndjson").write_bytes(ndjson(ticket(1)))
    report = logs / "r\x1b]0;PWNED\x07.ndjson"
    result = send("-n", "--report", str(report), str(logs))
    assert "\x1b]0;PWNED" not in result.stderr and "\\x1b]0;PWNED" in result.stderr
    again = send("-n", str(logs))
    assert "\x1b]0;PWNED" not in again.stderr and "\\x1b]0;PWNED" in again.stderr
