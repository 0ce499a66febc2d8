"""The ledger on a real SQLite file, and the planner that consults it."""

import sqlite3
from datetime import UTC, datetime

import pytest
from helpers import CSAT, NPS

from retently_cli.config import parse_config
from retently_cli.ledger import Ledger, default_ledger_path, email_hash, event_key
from retently_cli.matching import Matcher
from retently_cli.planning import Filters, Planner

DAY = 86_400.0


def test_rows_go_pending_then_sent_uncertain_or_away(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite3")
    ledger.begin(
        [("a", NPS, "A@x.com", 1.0), ("b", NPS, "b@x.com", None), ("c", NPS, "c@x.com", 2.0)]
    )
    assert [ledger.state(k, NPS) for k in "abc"] == ["pending"] * 3
    ledger.settle(sent=[("a", NPS, 200)], uncertain=[("b", NPS)], not_sent=[("c", NPS)])
    assert [ledger.state(k, NPS) for k in "abc"] == ["sent", "uncertain", None]
    assert ledger.state("a", CSAT) is None  # per campaign
    ledger.close()
    # what was committed is on disk, readable by another connection
    row = (
        sqlite3.connect(tmp_path / "l.sqlite3")
        .execute("SELECT state, status, email_hash FROM deliveries WHERE event_key = 'a'")
        .fetchone()
    )
    assert row == ("sent", 200, email_hash("a@x.com"))


def test_not_sent_never_deletes_a_row_that_was_delivered(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite3")
    ledger.begin([("a", NPS, "a@x.com", None)])
    ledger.settle(sent=[("a", NPS, 200)], uncertain=[], not_sent=[])
    ledger.settle(sent=[], uncertain=[], not_sent=[("a", NPS)])
    assert ledger.state("a", NPS) == "sent"


def test_a_pending_row_survives_a_process_that_never_settles(tmp_path):
    path = tmp_path / "l.sqlite3"
    Ledger(path).begin([("a", NPS, "a@x.com", None)])  # and the process 'dies' here
    assert Ledger(path).state("a", NPS) == "pending"


def test_a_dry_run_never_creates_or_changes_the_ledger(tmp_path):
    path = tmp_path / "none.sqlite3"
    assert Ledger.open_for_dry_run(path) is None and not path.exists()
    Ledger(path).begin([("a", NPS, "a@x.com", None)])
    read_only = Ledger.open_for_dry_run(path)
    assert read_only.state("a", NPS) == "pending"
    with pytest.raises(sqlite3.OperationalError):
        read_only.begin([("b", NPS, "b@x.com", None)])


def test_event_times_are_per_email_and_campaign_and_can_leave_one_event_out(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite3")
    ledger.begin([("a", NPS, "Ann@x.com", 100.0), ("b", NPS, "ann@x.com", 200.0)])
    ledger.begin([("c", CSAT, "ann@x.com", 300.0), ("d", NPS, "bob@x.com", 400.0)])
    assert sorted(ledger.event_times(NPS, "ANN@x.com")) == [100.0, 200.0]
    assert ledger.event_times(NPS, "ann@x.com", but="a") == [200.0]


def test_default_path_is_per_api_address_and_can_be_set(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_ledger_path() == tmp_path / "retently-cli" / "ledger.sqlite3"
    assert default_ledger_path("http://127.0.0.1:8787").name == "ledger-127.0.0.1-8787.sqlite3"
    monkeypatch.setenv("RETENTLY_LEDGER", str(tmp_path / "mine.db"))
    assert default_ledger_path() == tmp_path / "mine.db"


def test_event_key_is_the_message_id_else_a_stable_hash():
    assert event_key({"messageId": "ajs-1", "event": "X"}) == "ajs-1"
    assert event_key({"messageId": 42}) == "42"
    one = event_key({"event": "X", "properties": {"a": 1, "b": 2}})
    same = event_key({"properties": {"b": 2, "a": 1}, "event": "X", "_retently": {"x": 1}})
    other = event_key({"event": "X", "properties": {"a": 1, "b": 3}})
    assert one == same != other and one.startswith("sha256:")
    assert event_key({"messageId": "", "event": "X"}).startswith("sha256:")


# -- the planner -------------------------------------------------------------------------------

CONFIG = parse_config(
    f"""
campaigns:
  "{NPS}": {{events: "Order Completed, Signed Up", once_per_email: 30}}
  "{CSAT}": "Order Completed"
"""
)


def plan(messages, planner):
    matcher = Matcher(CONFIG)
    out = []
    for m in messages:
        for d in matcher.decide(m):
            verdict = planner.check(m, d) if d.reason is None else None
            out.append((m["messageId"], d.campaign.id, verdict.reason if verdict else None))
    return out


def order(mid, email="ann@example.com", ts="2024-05-01T10:00:00Z", event="Order Completed"):
    return {"type": "track", "event": event, "messageId": mid, "timestamp": ts,
            "properties": {"email": email}}  # fmt: skip


def test_since_and_until_use_the_event_time_with_fallbacks():
    since = datetime(2024, 5, 1, tzinfo=UTC)
    until = datetime(2024, 5, 2, tzinfo=UTC)
    planner = Planner(Filters(since=since, until=until, campaigns=frozenset({CSAT})))
    messages = [
        order("in", ts="2024-5-1T23:59:59Z"),  # no zero padding, as Segment has it
        order("before", ts="2024-04-30T23:59:59Z"),
        order("at-until", ts="2024-05-02T00:00:00Z"),
        {**order("fallback", ts=None), "originalTimestamp": "2024-05-01T12:00:00+02:00"},
        order("no-time", ts="garbage"),
    ]
    got = {(mid, reason) for mid, campaign, reason in plan(messages, planner) if campaign == CSAT}
    assert got == {("in", None), ("before", "filtered"), ("at-until", "filtered"),
                   ("fallback", None), ("no-time", "filtered")}  # fmt: skip


def test_event_and_campaign_filters_and_the_limit():
    planner = Planner(Filters(events=frozenset({"Order Completed"}), limit=3))
    messages = [
        order("1"),
        order("2", event="Signed Up", email="b@x.com"),
        order("3", email="c@x.com"),
    ]
    assert plan(messages, planner) == [
        ("1", NPS, None), ("1", CSAT, None), ("2", NPS, "filtered"),
        ("3", NPS, None), ("3", CSAT, "limit"),
    ]  # fmt: skip


def test_once_per_email_within_a_run_and_only_for_that_campaign():
    planner = Planner()
    messages = [
        order("1", ts="2024-05-01T00:00:00Z"),
        order("2", ts="2024-05-20T00:00:00Z"),  # 19 days later: too soon for NPS
        order("3", ts="2024-06-15T00:00:00Z"),  # 45 days later
        order("4", email="bob@example.com", ts="2024-05-02T00:00:00Z"),
    ]
    got = [(mid, reason) for mid, campaign, reason in plan(messages, planner) if campaign == NPS]
    assert got == [("1", None), ("2", "once_per_email"), ("3", None), ("4", None)]
    csat = [reason for _, campaign, reason in plan(messages[:2], Planner()) if campaign == CSAT]
    assert csat == [None, None]  # no guard configured there


def test_once_per_email_across_runs_through_the_ledger(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite3")
    when = datetime(2024, 5, 1, tzinfo=UTC).timestamp()
    ledger.begin([("earlier", NPS, "ANN@example.com", when)])
    ledger.settle(sent=[("earlier", NPS, 200)], uncertain=[], not_sent=[])
    planner = Planner(ledger=ledger)
    got = plan([order("new", ts="2024-05-10T00:00:00Z"), order("earlier")], planner)
    assert (("new", NPS, "once_per_email") in got) and (("earlier", NPS, "already_sent") in got)


def test_the_ledger_turns_earlier_deliveries_into_skips_and_unknowns_into_uncertain(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite3")
    ledger.begin([("sent", CSAT, "a@x.com", None), ("lost", CSAT, "b@x.com", None)])
    ledger.settle(sent=[("sent", CSAT, 200)], uncertain=[], not_sent=[])
    messages = [order("sent", email="a@x.com"), order("lost", email="b@x.com"), order("new")]
    plain = [(m, r) for m, c, r in plan(messages, Planner(ledger=ledger)) if c == CSAT]
    assert plain == [("sent", "already_sent"), ("lost", "earlier_run"), ("new", None)]
    retry = [
        (m, r)
        for m, c, r in plan(messages, Planner(ledger=ledger, retry_uncertain=True))
        if c == CSAT
    ]
    assert retry == [("sent", "already_sent"), ("lost", None), ("new", None)]
