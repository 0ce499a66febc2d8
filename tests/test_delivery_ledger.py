"""Delivery when the ledger cannot be written: a real SQLite file, full or locked by another
program, and the fake Retently over loopback."""

import sqlite3

from helpers import CSAT, TEST_KEY
from test_delivery import deliver_all, delivered_once, sender_for, surveys

from retently_cli.fake_server import FakeRetently
from retently_cli.ledger import Ledger


def keyed(items):
    for item in items:
        item.key = item.decision.message_id
    return items


def full_ledger(path):
    """A ledger whose disk is full: SQLite may not grow the file by a single page."""
    ledger = Ledger(path)
    pages = ledger._db.execute("PRAGMA page_count").fetchone()[0]
    ledger._db.execute(f"PRAGMA max_page_count = {pages}")
    return ledger


def test_surveys_a_full_ledger_could_not_record_are_not_sent_and_a_rerun_sends_them(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    ledger = full_ledger(path)
    warnings = []
    with FakeRetently(api_key=TEST_KEY) as server:
        sender = sender_for(server)
        sender.ledger = ledger
        sender._warn = warnings.append
        outcomes = deliver_all(sender, keyed(surveys(150)), size=50, concurrency=2)
        assert server.survey_count() == 0
    assert len(outcomes) == 150
    assert not any(o.sent or o.uncertain for o in outcomes)  # known: none of them went out
    assert {o.reason for o in outcomes} == {"not_sent"}
    full = [o for o in outcomes if "database or disk is full" in (o.detail or "")]
    assert full and all("nothing was sent" in o.detail for o in full)
    assert sender.stop.is_set()  # nothing can be recorded: nothing more is sent
    assert len(warnings) == 1 and "ledger" in warnings[0]
    ledger.close()

    again = Ledger(path)  # space is back: the next run sends every one of them, once
    with FakeRetently(api_key=TEST_KEY) as server:
        sender = sender_for(server)
        sender.ledger = again
        outcomes = deliver_all(sender, keyed(surveys(150)), size=50)
        assert len(delivered_once(server)) == 150
    assert all(o.sent for o in outcomes)
    assert again.state("m0", CSAT) == "sent"


def test_a_delivery_the_ledger_cannot_record_is_reported_sent_and_stops_the_run(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    ledger = Ledger(path)
    ledger._db.execute("PRAGMA busy_timeout = 0")  # fail at once, not after 10 s
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    warnings = []
    with FakeRetently(api_key=TEST_KEY) as server:
        answer = server._survey

        def answer_then_lock_the_ledger(raw, started):
            if not other.in_transaction:  # another program takes the ledger's write lock
                other.execute("BEGIN IMMEDIATE")
            return answer(raw, started)

        server._survey = answer_then_lock_the_ledger
        sender = sender_for(server)
        sender.ledger = ledger
        sender._sleep = lambda seconds: None
        sender._warn = warnings.append
        outcomes = deliver_all(sender, keyed(surveys(4)), size=2, concurrency=1)
        assert server.survey_count() == 2
    other.execute("ROLLBACK")
    other.close()

    sent = sorted((o for o in outcomes if o.sent), key=lambda o: o.survey.key)
    assert [o.survey.key for o in sent] == ["m0", "m1"]  # what is known: Retently took them
    for outcome in sent:
        assert "database is locked" in outcome.detail
        assert "the ledger could not record" in outcome.detail
    assert {o.reason for o in outcomes if not o.sent} == {"not_sent"}  # the run stopped
    assert sender.stop.is_set()
    assert len(warnings) == 1 and "ledger" in warnings[0]
    # Still in flight as far as the ledger knows: the next run lists it uncertain, never resends.
    assert ledger.state("m0", CSAT) == "pending"
    assert ledger.state("m2", CSAT) is None
