"""retently diff, coverage and init: previewing a config against real traffic."""

import os
import subprocess
import threading

import orjson
import pytest
from helpers import (
    CES,
    CSAT,
    EXAMPLE_CONFIG,
    NPS,
    RETENTLY,
    ROOT,
    TEST_KEY,
    ndjson,
    records,
    run,
    track,
)

import retently_cli.fanout as fanout
import retently_cli.readers as readers
from retently_cli.config import parse_config
from retently_cli.diffing import Differ

OLD = f"""\
campaigns:
  "{NPS}": "Order Completed"
  "{CSAT}": "Order Completed, Ticket Closed"
"""
NEW = f"""\
campaigns:
  "{NPS}": "Order Completed, Signed Up"
  "{CES}": "Ticket Closed"
properties:
  exclude: [plan]
"""


def configs(tmp_path, old=OLD, new=NEW):
    (tmp_path / "old.yaml").write_text(old)
    (tmp_path / "new.yaml").write_text(new)
    return str(tmp_path / "old.yaml"), str(tmp_path / "new.yaml")


EVENTS = [
    track(event="Order Completed", message_id="o1", email="ann@example.com", plan="pro"),
    track(event="Ticket Closed", message_id="t1", email="bob@example.com"),
    track(event="Ticket Closed", message_id="t2", email="cy@example.com"),
    track(event="Signed Up", message_id="s1", email="dee@example.com"),
    {"type": "page", "messageId": "p1"},
]


# -- the engine --------------------------------------------------------------------------------


def test_differ_classifies_every_changed_decision():
    differ = Differ(parse_config(OLD), parse_config(NEW))
    changes = [(c.kind, c.event, c.campaign) for m in EVENTS for c in differ.compare(m)]
    assert changes == [
        ("changed", "Order Completed", NPS),  # 'plan' is no longer sent
        ("removed", "Order Completed", CSAT),
        ("removed", "Ticket Closed", CSAT),  # campaigns in id order within an event
        ("added", "Ticket Closed", CES),
        ("removed", "Ticket Closed", CSAT),
        ("added", "Ticket Closed", CES),
        ("added", "Signed Up", NPS),
    ]
    assert differ.before == {NPS: 1, CSAT: 3} and differ.after == {NPS: 2, CES: 2}
    verdicts = {name: entry.verdict for name, entry in differ.names.items()}
    assert verdicts["Ticket Closed"] == "moves"
    assert verdicts["Signed Up"] == "newly triggers"
    assert differ.names["Ticket Closed"].examples[("added", CES)] == [
        "bob@example.com",
        "cy@example.com",
    ]


def test_the_same_config_changes_nothing():
    differ = Differ(parse_config(OLD), parse_config(OLD))
    assert not [c for m in EVENTS for c in differ.compare(m)] and not differ.changed


# -- retently diff -----------------------------------------------------------------------------


def test_diff_exits_1_and_lists_every_change_with_its_line(tmp_path):
    old, new = configs(tmp_path)
    result = run("diff", "-o", "ndjson", old, new, "-", input=ndjson(*EVENTS))
    assert result.exit_code == 1, result.stderr
    got = [(r["line"], r["change"], r["campaign"]) for r in records(result.stdout)]
    assert got == [(1, "changed", NPS), (1, "removed", CSAT), (2, "removed", CSAT),
                   (2, "added", CES), (3, "removed", CSAT), (3, "added", CES),
                   (4, "added", NPS)]  # fmt: skip
    first = records(result.stdout)[0]
    assert first["source"] == "-" and first["message_id"] == "o1"
    labels = lambda body: [p["label"] for p in body["subscribers"][0].get("properties", [])]  # noqa: E731
    assert labels(first["old_request"]) == ["plan"] and labels(first["new_request"]) == []


def test_diff_table_shows_campaign_totals_and_what_each_name_does(tmp_path):
    old, new = configs(tmp_path)
    result = run("diff", old, new, "-", input=ndjson(*EVENTS))
    out = result.stdout
    assert result.exit_code == 1
    assert any(line.split() == [CSAT, "3", "0", "-3"] for line in out.splitlines())
    assert any(line.split() == [CES, "0", "2", "+2"] for line in out.splitlines())
    assert "'Ticket Closed' moves" in out
    assert f"+ now in {CES}: 2 events   e.g. bob@example.com, cy@example.com" in out
    assert "'Signed Up' newly triggers" in out
    assert "5 lines read from 1 source(s)" in result.stderr


def test_diff_exits_0_when_nothing_changes_and_2_on_a_bad_config(tmp_path):
    old, _ = configs(tmp_path)
    same = run("diff", old, old, "-", input=ndjson(*EVENTS))
    assert same.exit_code == 0 and "No change" in same.stdout
    (tmp_path / "bad.yaml").write_text("campaigns:\n  a: X\n  a: Y\n")
    bad = run("diff", old, str(tmp_path / "bad.yaml"), "-", input=ndjson(*EVENTS))
    assert bad.exit_code == 2 and "bad.yaml:3: campaigns.a: written twice" in bad.stderr
    assert bad.stdout == ""
    missing = run("diff", old, str(tmp_path / "nope.yaml"))
    assert missing.exit_code == 2


def test_diff_on_the_examples_sees_moves_and_payload_changes(tmp_path):
    new = EXAMPLE_CONFIG.read_text().replace(
        'events: ["Support Ticket Closed", "Order Completed"]', 'events: ["Support Ticket Closed"]'
    )
    (tmp_path / "new.yaml").write_text(new)
    result = run("diff", str(EXAMPLE_CONFIG), str(tmp_path / "new.yaml"), str(ROOT / "examples"))
    assert result.exit_code == 1
    assert "'Order Completed' stops triggering" in result.stdout


# -- one pass ----------------------------------------------------------------------------------


def test_each_input_is_read_once(tmp_path, monkeypatch):
    opened = []
    real = readers.read_source

    def counting(source, *args, **kwargs):
        opened.append(source.name)
        return real(source, *args, **kwargs)

    monkeypatch.setattr(readers, "read_source", counting)
    monkeypatch.setattr(fanout, "read_source", counting)  # where diff reads, worker or not
    data = tmp_path / "e.ndjson"
    data.write_bytes(ndjson(*EVENTS))
    old, new = configs(tmp_path)
    run("diff", old, new, str(data))
    run("coverage", "-c", old, str(data))
    assert opened == [str(data), str(data)]  # once per command


@pytest.mark.slow
def test_diff_and_coverage_read_a_fifo_that_can_only_be_read_once(tmp_path):
    old, new = configs(tmp_path)
    for command in (["diff", old, new], ["coverage", "-c", old, "-o", "json"]):
        fifo = tmp_path / "events.fifo"
        os.mkfifo(fifo)

        def feed(path=fifo):
            with open(path, "wb") as f:
                f.write(ndjson(*EVENTS))

        writer = threading.Thread(target=feed)
        writer.start()
        result = subprocess.run(
            [*RETENTLY, *command, str(fifo)],
            capture_output=True, timeout=30, cwd=ROOT,
        )  # fmt: skip
        writer.join(timeout=5)
        fifo.unlink()
        if command[0] == "diff":
            assert result.returncode == 1 and b"'Ticket Closed' moves" in result.stdout
        else:
            summary = orjson.loads(result.stdout)
            assert summary["track_events"] == 4


# -- retently coverage -------------------------------------------------------------------------


def test_coverage_json_lists_names_by_count_with_campaigns_near_misses_and_emails(tmp_path):
    old, _ = configs(tmp_path)
    events = [
        *(track(event="Ticket Closed", message_id=f"t{i}") for i in range(3)),
        track(event="Order Completed", message_id="o1", email=None),
        {**track(event="Order Completed", message_id="o2", email=None),
         "context": {"traits": {"email": "ann@example.com"}}},
        track(event="Order Completed", message_id="o3", email="nope"),
        track(event="order completed", message_id="n1"),
        track(event="Product Viewed", message_id="v1"),
        {"type": "identify", "traits": {}},
    ]  # fmt: skip
    result = run("coverage", "-c", old, "-o", "json", "-", input=ndjson(*events))
    assert result.exit_code == 0, result.stderr
    summary = orjson.loads(result.stdout)
    rows = {row["event"]: row for row in summary["events"]}
    assert [row["event"] for row in summary["events"]][:2] == ["Order Completed", "Ticket Closed"]
    assert rows["Order Completed"]["campaigns"] == [NPS, CSAT]
    assert rows["Order Completed"]["missing_email"] == 2
    assert rows["Order Completed"]["email_found_at"] == {"context.traits.email": 1}
    assert rows["Order Completed"]["invalid_email"] == 1
    assert rows["order completed"]["near_miss_of"] == "Order Completed"
    assert (
        rows["Product Viewed"]["campaigns"] == [] and rows["Product Viewed"]["near_miss_of"] is None
    )
    assert summary["track_events"] == 8 and summary["not_track"] == 1
    assert summary["mapped_never_seen"] == []


def test_coverage_table_flags_mapped_names_never_seen(tmp_path):
    old, _ = configs(tmp_path)
    result = run("coverage", "-c", old, "-", input=ndjson(track(event="Order Complete")))
    assert "near miss of 'Order Completed'" in result.stdout
    assert "mapped but never seen (typos?): 'Order Completed', 'Ticket Closed'" in result.stdout


# -- retently init -----------------------------------------------------------------------------


def test_init_writes_a_valid_starter_and_never_overwrites_without_force(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = run("init")
    assert first.exit_code == 0, first.stderr
    checked = run("check", "-c", "retently.yaml")  # valid, but the TODOs are still there
    assert checked.exit_code == 2 and "is the starter's placeholder" in checked.stderr
    assert run("send", "-n", "-c", "retently.yaml", "-", input=b"").exit_code == 0
    (tmp_path / "retently.yaml").write_text("mine\n")
    again = run("init")
    assert again.exit_code == 2 and "retently.yaml exists; --force overwrites it" in again.stderr
    assert (tmp_path / "retently.yaml").read_text() == "mine\n"
    assert run("init", "--force").exit_code == 0
    assert "campaigns:" in (tmp_path / "retently.yaml").read_text()


def test_init_from_a_log_lists_frequent_names_as_comments(tmp_path):
    log = tmp_path / "log.ndjson"
    orders = [track(event="Order Completed", message_id=str(i)) for i in range(3)]
    log.write_bytes(ndjson(*orders, track(event="Signed Up"), {"type": "page", "event": "Page"}))
    result = run("init", "-", "--from-log", str(log))
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    first = lines.index(next(line for line in lines if "most frequent Track events" in line))
    assert lines[first + 1].split() == ["#", '"Order', 'Completed"', "3"]
    assert lines[first + 2].split() == ["#", '"Signed', 'Up"', "1"]
    assert '"Page"' not in result.stdout
    assert parse_config(result.stdout).campaigns  # still a valid config


def test_init_with_a_key_fills_in_the_transactional_campaigns(fake_env, tmp_path):
    result = run("init", str(tmp_path / "r.yaml"))
    assert result.exit_code == 0, result.stderr
    text = (tmp_path / "r.yaml").read_text()
    config = parse_config(text)
    assert {c.id for c in config.campaigns} == {NPS, CSAT, CES}  # not the regular one
    assert "# Post-purchase NPS (NPS, email)" in text
    assert TEST_KEY not in text + result.stderr
