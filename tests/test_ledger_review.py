"""Ledger defects found in review: an upgrade that renamed the default ledger, a batch that
never started forgetting a killed run's pending rows, a ledger path turned into a file, a full
ledger's exit code, and a lost ledger taken for a full one."""

import sqlite3

from helpers import CSAT, EXAMPLE_CONFIG, NPS, TEST_KEY, ndjson, run, stderr_lines, track
from test_delivery import deliver_all, sender_for, surveys

from retently_cli.delivery import Batch
from retently_cli.fake_server import FakeRetently
from retently_cli.ledger import Ledger, default_ledger_path


def keyed(items):
    for item in items:
        item.key = item.decision.message_id
    return items


# -- A: an upgrade keeps the ledger an older version named ----------------------------------------


def test_a_ledger_under_the_name_an_older_version_gave_it_is_found(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    url = "http://localhost:8787"  # the old name was ledger-localhost-8787.sqlite3
    old = tmp_path / "retently-cli" / "ledger-localhost-8787.sqlite3"
    ledger = Ledger(old)
    ledger.begin([("a", NPS, "a@x.com", None)])
    ledger.settle(sent=[("a", NPS, 200)], uncertain=[], not_sent=[])
    ledger.close()
    notes = []
    path = default_ledger_path(url, environ={}, notify=notes.append)
    assert path.name == "ledger-127.0.0.1-8787.sqlite3" and not old.exists()
    assert len(notes) == 1 and old.name in notes[0] and path.name in notes[0]
    again = Ledger(path)
    assert again.state("a", NPS) == "sent"
    again.close()
    assert default_ledger_path(url, environ={}, notify=notes.append) == path
    assert len(notes) == 1  # renamed once


def test_the_default_address_with_its_port_finds_its_old_ledger_too(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    old = tmp_path / "retently-cli" / "ledger-app.retently.com-443.sqlite3"
    ledger = Ledger(old)
    ledger.begin([("a", NPS, "a@x.com", None)])  # pending, as a killed run leaves it
    ledger.close()
    path = default_ledger_path("https://app.retently.com:443", environ={}, notify=lambda _: 0)
    assert path.name == "ledger.sqlite3"
    assert Ledger(path).state("a", NPS) == "pending"


def test_an_old_ledger_in_use_by_an_older_run_is_left_where_it_is(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    old = tmp_path / "retently-cli" / "ledger-localhost-8787.sqlite3"
    running = Ledger(old)  # holds ledger-localhost-8787.sqlite3.lock
    path = default_ledger_path("http://localhost:8787", environ={}, notify=lambda _: 0)
    assert path == old and old.exists()
    running.close()


# -- B: a batch that never started leaves a killed run's rows alone -------------------------------


def test_a_batch_stopped_before_it_began_keeps_a_killed_runs_pending_rows(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    killed = Ledger(path)
    items = keyed(surveys(3))
    killed.begin((s.key, CSAT, s.decision.email, None) for s in items)
    killed.close()  # the run was killed: no settle

    ledger = Ledger(path)
    with FakeRetently(api_key=TEST_KEY) as server:
        sender = sender_for(server)
        sender.ledger = ledger
        sender.stop.set()  # the run stops before this batch is sent
        outcomes = sender.deliver_recorded(Batch(CSAT, None, items))
        assert server.survey_count() == 0
    assert {o.reason for o in outcomes} == {"not_sent"}
    assert [ledger.state(s.key, CSAT) for s in items] == ["pending"] * 3


# -- C: the ledger's folder replaced by a file ----------------------------------------------------


def test_a_ledger_folder_turned_into_a_file_is_a_lost_ledger_not_a_traceback(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    ledger = Ledger(folder / "ledger.sqlite3")
    ledger.begin([("a", NPS, "a@x.com", None)])
    folder.rename(tmp_path / "d2")
    folder.write_text("")
    lost = ledger.verify()
    assert lost is not None and "ledger" in str(lost)
    ledger.close()


# -- D: a ledger that cannot be written exits 2 ---------------------------------------------------


def test_a_ledger_that_cannot_be_written_exits_2_and_says_why(fake_env, monkeypatch):
    def full(self, rows):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Ledger, "begin", full)
    data = ndjson(track(message_id="a", email="ann@example.com"))
    result = run("send", "-c", str(EXAMPLE_CONFIG), "-", input=data)
    assert result.exit_code == 2, result.stderr
    assert fake_env.survey_count() == 0
    assert "cannot be written (database or disk is full)" in result.stderr
    assert any(
        line.startswith("retently: ledger") and "stopped reading" in line
        for line in stderr_lines(result)
    )
    assert TEST_KEY not in result.stderr + result.stdout


# -- E: a lost ledger is not a full one -----------------------------------------------------------


def test_a_ledger_lost_before_settling_is_not_retried_nor_blamed_on_the_disk(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    ledger = Ledger(path)
    warnings, sleeps = [], []
    with FakeRetently(api_key=TEST_KEY) as server:
        answer = server._survey

        def answer_then_lose_the_ledger(raw, started):
            with open(path, "r+b") as f:  # the ledger emptied: nothing left to write to
                f.truncate(0)
            return answer(raw, started)

        server._survey = answer_then_lose_the_ledger
        sender = sender_for(server)
        sender.ledger = ledger
        sender._sleep = sleeps.append
        sender._warn = warnings.append
        outcomes = deliver_all(sender, keyed(surveys(4)), size=2, concurrency=1)
    assert not sleeps  # a lost ledger does not come back by waiting
    assert not any("cannot be written" in w for w in warnings)
    not_sent = [o for o in outcomes if o.reason == "not_sent"]
    assert not_sent  # the second batch never went out: the next run sends it
    assert not any("uncertain" in (o.detail or "") for o in not_sent)
    assert sender.stop.is_set()
