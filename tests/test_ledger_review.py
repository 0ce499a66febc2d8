"""Ledger defects found in review: an upgrade that renamed the default ledger, a batch that
never started forgetting a killed run's pending rows, a ledger path turned into a file, a full
ledger's exit code, and a lost ledger taken for a full one."""

from conftest import NPS

from retently_cli.ledger import Ledger, default_ledger_path

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
