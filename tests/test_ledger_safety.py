"""A ledger is never silently replaced: a file that is not one is refused, a ledger that
vanishes mid-run stops the run, one file has one lock whatever it is called, one API address
has one default ledger, and a dry-run reads a ledger it cannot write."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers import CSAT, NPS, RETENTLY, ROOT, TEST_KEY, ndjson, records, run, track

from retently_cli.fake_server import FakeRetently
from retently_cli.ledger import (
    Ledger,
    LedgerBusy,
    LedgerInvalid,
    LedgerLost,
    default_ledger_path,
)

CONFIG = f"""\
campaigns:
  "{NPS}": "Order Completed"
  "{CSAT}": "Order Completed, Ticket Closed"
batch_size: 1
concurrency: 1
"""


def filled(path: Path, rows: int = 1) -> Path:
    ledger = Ledger(path)
    ledger.begin([(f"k{i}", NPS, f"u{i}@x.com", None) for i in range(rows)])
    ledger.settle(sent=[(f"k{i}", NPS, 200) for i in range(rows)], uncertain=[], not_sent=[])
    ledger.close()
    return path


def damaged(path: Path) -> Path:
    """A real ledger of many pages with bytes in the middle overwritten."""
    filled(path, rows=3000)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 2048] = os.urandom(2048)
    path.write_bytes(bytes(data))
    return path


@contextmanager
def immutable_folder(folder: Path):
    """A folder in which not even root can create a file (chattr +i), else skip."""
    done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot make a folder immutable here: {done.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


# -- opening: only a missing path makes a new ledger ----------------------------------------------


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"", "empty (0 bytes)"),
        (b"campaign,email\n1,a@x.com\n", "not an SQLite database"),
    ],
)
@pytest.mark.parametrize("dry_run", [False, True])
def test_an_existing_file_that_is_no_ledger_is_refused_and_left_alone(
    tmp_path, content, problem, dry_run
):
    path = tmp_path / "l.sqlite3"
    path.write_bytes(content)
    with pytest.raises(LedgerInvalid) as refused:
        Ledger.open_for_dry_run(path) if dry_run else Ledger(path)
    assert str(path) in str(refused.value) and problem in str(refused.value)
    assert "not a retently ledger" in str(refused.value)
    assert path.read_bytes() == content


def test_an_sqlite_database_of_something_else_is_refused(tmp_path):
    path = tmp_path / "other.db"
    other = sqlite3.connect(path)
    other.execute("CREATE TABLE customers (email TEXT)")
    other.commit()
    other.close()
    with pytest.raises(LedgerInvalid, match="not a retently ledger"):
        Ledger(path)
    with pytest.raises(LedgerInvalid, match="not a retently ledger"):
        Ledger.open_for_dry_run(path)
    tables = sqlite3.connect(path).execute("SELECT name FROM sqlite_master").fetchall()
    assert tables == [("customers",)]


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_ledger_with_damaged_pages_is_refused(tmp_path, dry_run):
    path = damaged(tmp_path / "l.sqlite3")
    with pytest.raises(LedgerInvalid, match="damaged") as refused:
        Ledger.open_for_dry_run(path) if dry_run else Ledger(path)
    assert str(path) in str(refused.value)


def test_a_ledger_written_by_the_first_version_is_still_a_ledger(tmp_path):
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)  # the schema of the first release: no marker, no 'retried'
    old.executescript(
        "CREATE TABLE deliveries (event_key TEXT NOT NULL, campaign TEXT NOT NULL, "
        "state TEXT NOT NULL, email_hash TEXT NOT NULL, event_time REAL, "
        "updated_at REAL NOT NULL, status INTEGER, PRIMARY KEY (event_key, campaign)) "
        "WITHOUT ROWID;"
        "INSERT INTO deliveries VALUES ('a', 'c', 'uncertain', 'h', NULL, 1.0, NULL);"
    )
    old.commit()
    old.close()
    assert Ledger.open_for_dry_run(path).state("a", "c") == "uncertain"
    ledger = Ledger(path)
    ledger.begin([("a", "c", "a@x.com", None)])  # a retry of an uncertain one
    ledger.settle(sent=[], uncertain=[], not_sent=[("a", "c")])
    assert ledger.state("a", "c") == "uncertain"


# -- a ledger that vanishes or changes under a run -------------------------------------------------


def test_a_deleted_ledger_stops_the_writes_and_is_put_back_with_what_it_knew(tmp_path):
    path = filled(tmp_path / "l.sqlite3")
    ledger = Ledger(path)
    ledger.begin([("flying", NPS, "f@x.com", None)])  # a request is in flight...
    path.unlink()  # ...when someone deletes the file
    with pytest.raises(LedgerLost) as lost:
        ledger.begin([("next", NPS, "n@x.com", None)])
    assert str(path) in str(lost.value) and "deleted" in str(lost.value)
    ledger.settle(sent=[("flying", NPS, 200)], uncertain=[], not_sent=[])
    with pytest.raises(LedgerLost):  # however many times it is asked
        ledger.begin([("next", NPS, "n@x.com", None)])
    assert ledger.verify() is lost.value
    ledger.close()
    again = Ledger(path)
    assert [again.state(k, NPS) for k in ("k0", "flying", "next")] == ["sent", "sent", None]


def test_a_replaced_ledger_is_left_alone_and_what_this_run_knew_is_saved_aside(tmp_path):
    path = filled(tmp_path / "l.sqlite3")
    ledger = Ledger(path)
    impostor = tmp_path / "impostor"
    impostor.write_bytes(b"someone else's file")
    os.replace(impostor, path)
    with pytest.raises(LedgerLost, match="replaced") as lost:
        ledger.begin([("next", NPS, "n@x.com", None)])
    ledger.close()
    assert path.read_bytes() == b"someone else's file"
    saved = [p for p in tmp_path.iterdir() if p.name.startswith("l.sqlite3.rescued-")]
    assert len(saved) == 1 and str(saved[0]) in str(lost.value)
    assert Ledger(saved[0]).state("k0", NPS) == "sent"


def test_an_emptied_ledger_stops_the_writes(tmp_path):
    path = filled(tmp_path / "l.sqlite3")
    ledger = Ledger(path)
    with open(path, "r+b") as f:
        f.truncate(0)
    with pytest.raises(LedgerLost, match="emptied"):
        ledger.begin([("next", NPS, "n@x.com", None)])
    assert ledger.state("next", NPS) is None
    ledger.close()
    with pytest.raises(LedgerInvalid, match="empty"):
        Ledger(path)


def test_a_ledger_left_alone_is_never_taken_for_lost(tmp_path):
    ledger = Ledger(tmp_path / "new" / "l.sqlite3")
    for i in range(50):
        ledger.begin([(f"k{i}", NPS, "a@x.com", None)])
        ledger.settle(sent=[(f"k{i}", NPS, 200)], uncertain=[], not_sent=[])
    assert ledger.verify() is None


# -- one file, one lock ---------------------------------------------------------------------------


def test_a_symlink_to_a_ledger_in_use_is_refused(tmp_path):
    real = tmp_path / "L.db"
    holder = Ledger(real)
    (tmp_path / "alias.db").symlink_to(real)
    (tmp_path / "dir").symlink_to(tmp_path)
    (tmp_path / "sub").mkdir()
    for other in (tmp_path / "alias.db", tmp_path / "dir" / "L.db", tmp_path / "sub/../L.db"):
        with pytest.raises(LedgerBusy):
            Ledger(other)
    holder.close()
    Ledger(tmp_path / "alias.db").close()


# -- one API address, one default ledger ----------------------------------------------------------


def test_every_spelling_of_an_api_address_has_one_default_ledger(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))

    def name(url):
        return default_ledger_path(url, environ={}).name

    # the default address keeps the name it always had, so no one's history is orphaned
    assert default_ledger_path(environ={}) == tmp_path / "retently-cli" / "ledger.sqlite3"
    for url in ("https://app.retently.com", "https://app.retently.com/",
                "https://APP.Retently.com", "https://app.retently.com:443",
                "HTTPS://app.retently.com.:443/"):  # fmt: skip
        assert name(url) == "ledger.sqlite3", url
    loopback = {name(f"http://{host}:8787") for host in
                ("127.0.0.1", "localhost", "LOCALHOST", "127.0.0.2", "[::1]")}  # fmt: skip
    assert loopback == {"ledger-127.0.0.1-8787.sqlite3"}  # the name it had before
    assert name("http://127.0.0.1:8788") != name("http://127.0.0.1:8787")
    assert name("https://eu.example.com:443") == name("https://EU.example.com")
    assert name("https://eu.example.com") != name("http://eu.example.com")
    assert name("https://eu.example.com:8443") != name("https://eu.example.com")
    assert default_ledger_path(environ={"RETENTLY_LEDGER": "/x/mine.db"}) == Path("/x/mine.db")


# -- a dry-run on a folder it cannot write ---------------------------------------------------------


def test_a_dry_run_reads_a_ledger_in_a_folder_nobody_can_write(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    filled(folder / "l.sqlite3")
    before = sorted(p.name for p in folder.iterdir())
    with immutable_folder(folder):
        ledger = Ledger.open_for_dry_run(folder / "l.sqlite3")
        assert ledger.state("k0", NPS) == "sent"
        ledger.close()
    assert sorted(p.name for p in folder.iterdir()) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod")
def test_a_dry_run_reads_a_ledger_in_a_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    filled(folder / "l.sqlite3")
    folder.chmod(0o555)
    try:
        ledger = Ledger.open_for_dry_run(folder / "l.sqlite3")
        assert ledger.state("k0", NPS) == "sent"
        ledger.close()
    finally:
        folder.chmod(0o755)


# -- the command line -----------------------------------------------------------------------------


@pytest.fixture
def setup(tmp_path, fake, monkeypatch):
    monkeypatch.setenv("RETENTLY_BASE_URL", fake.url)
    monkeypatch.setenv("RETENTLY_API_KEY", TEST_KEY)
    (tmp_path / "c.yaml").write_text(CONFIG)
    return tmp_path


def send(tmp_path, *args, input=None):
    return run("send", "-c", str(tmp_path / "c.yaml"), "-o", "ndjson", *args, input=input)


def event(i, name="Order Completed"):
    return track(event=name, message_id=f"m{i}", email=f"u{i}@example.com", ref=f"m{i}")


@pytest.mark.parametrize("dry_run", [[], ["-n"]])
@pytest.mark.parametrize("kind", ["empty", "text", "damaged"])
def test_send_refuses_a_ledger_that_is_not_one(setup, fake, kind, dry_run):
    path = setup / "l.sqlite3"
    if kind == "damaged":
        damaged(path)
    else:
        path.write_bytes(b"" if kind == "empty" else b"hello\n")
    before = path.read_bytes()
    result = send(setup, *dry_run, "--ledger", str(path), "-", input=ndjson(event(1)))
    assert result.exit_code == 2, result.output
    assert f"ledger {path}" in result.stderr and "not a retently ledger" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert fake.survey_count() == 0 and path.read_bytes() == before


def test_send_refuses_a_symlink_to_a_ledger_in_use(setup, fake):
    real = setup / "L.db"
    (setup / "alias.db").symlink_to(real)
    holder = Ledger(real)  # another run, still going
    try:
        second = send(setup, "--ledger", str(setup / "alias.db"), "-", input=ndjson(event(1)))
        assert second.exit_code == 2 and "another run is using this ledger" in second.stderr
    finally:
        holder.close()
    assert fake.survey_count() == 0


def test_send_on_localhost_then_127_0_0_1_uses_one_default_ledger(setup, fake, monkeypatch):
    data = ndjson(event(1))
    monkeypatch.setenv("RETENTLY_BASE_URL", f"http://127.0.0.1:{fake.port}")
    assert send(setup, "-", input=data).exit_code == 0
    monkeypatch.setenv("RETENTLY_BASE_URL", f"http://localhost:{fake.port}")
    again = records(send(setup, "-", input=data).stdout)
    assert {r["reason"] for r in again} == {"already_sent"} and fake.survey_count() == 2


def test_a_dry_run_reads_the_ledger_in_a_folder_nobody_can_write(setup, fake):
    folder = setup / "ro"
    folder.mkdir()
    path = folder / "l.sqlite3"
    assert send(setup, "--ledger", str(path), "-", input=ndjson(event(1))).exit_code == 0
    with immutable_folder(folder):
        dry = send(setup, "-n", "--ledger", str(path), "-", input=ndjson(event(1), event(2)))
    assert dry.exit_code == 0, dry.stderr
    got = Counter((r["message_id"], r["reason"]) for r in records(dry.stdout))
    assert got == {("m1", "already_sent"): 2, ("m2", None): 2}


def _delivered(server) -> Counter:
    def ref(subscriber):
        return next(p["value"] for p in subscriber["properties"] if p["label"] == "ref")

    return Counter((s["campaign"], ref(s["subscriber"])) for s in server.surveys)


def _send_process(tmp_path, url, ledger, events):
    env = {**os.environ, "NO_COLOR": "1", "RETENTLY_BASE_URL": url, "RETENTLY_API_KEY": TEST_KEY}
    command = [*RETENTLY, "send", "-c", str(tmp_path / "c.yaml"),
               "-o", "ndjson", "--ledger", str(ledger), str(events)]  # fmt: skip
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT
    )


@pytest.mark.slow
def test_a_ledger_deleted_mid_run_stops_the_run_and_the_next_run_doubles_nothing(tmp_path):
    (tmp_path / "c.yaml").write_text(CONFIG)
    events = tmp_path / "events.ndjson"
    events.write_bytes(ndjson(*(event(i, name="Ticket Closed") for i in range(8))))
    ledger = tmp_path / "ledger.sqlite3"
    with FakeRetently(api_key=TEST_KEY, slow_seconds=0.5) as fake:
        fake.inject("slow", times=8)  # one request at a time, each answered after 0.5 s
        first = _send_process(tmp_path, fake.url, ledger, events)
        deadline = time.monotonic() + 30
        while fake.survey_count() < 2 and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        ledger.unlink()
        out, err = first.communicate(timeout=60)
        assert first.returncode == 2, err.decode()
        assert fake.survey_count() < 8, "it finished before the ledger was deleted"
        err = err.decode()
        assert f"ledger {ledger}" in err and "deleted" in err and "Traceback" not in err
        outcomes = Counter((r["outcome"], r["reason"]) for r in records(out))
        assert outcomes[("failed", "not_sent")] >= 1
        assert set(outcomes) <= {("sent", None), ("failed", "not_sent")}
        sent_first = fake.survey_count()
        second = _send_process(tmp_path, fake.url, ledger, events)
        out, err = second.communicate(timeout=60)
        counts = _delivered(fake)
    assert second.returncode == 0, err.decode()
    assert all(n == 1 for n in counts.values()), counts
    assert len(counts) == 8
    rerun = Counter(r["reason"] for r in records(out))
    assert rerun == {"already_sent": sent_first, None: 8 - sent_first}


# A process that dies (SIGKILL) as its ledger is being made: at the schema, so after SQLite has
# created the file, as a run killed in its first moments does.
_KILLED_WHILE_CREATING = """
import os, signal, sqlite3, sys
from retently_cli import ledger

class Dying:
    def __init__(self, db):
        self._db = db
    def executescript(self, script):
        os.kill(os.getpid(), signal.SIGKILL)
    def __getattr__(self, name):
        return getattr(self._db, name)

class Connecting:
    def __getattr__(self, name):
        return getattr(sqlite3, name)
    def connect(self, *args, **kwargs):
        return Dying(sqlite3.connect(*args, **kwargs))

ledger.sqlite3 = Connecting()
ledger.Ledger(sys.argv[1])
"""


@pytest.mark.parametrize("times", [1, 3])
def test_a_run_killed_while_creating_its_ledger_leaves_none_a_later_run_refuses(tmp_path, times):
    path = tmp_path / "ledger.sqlite3"
    for _ in range(times):
        killed = subprocess.run(
            [sys.executable, "-c", _KILLED_WHILE_CREATING, str(path)], cwd=ROOT, timeout=60
        )
        assert killed.returncode == -signal.SIGKILL
    ledger = Ledger(path)  # a later run: no "empty" or "not a retently ledger" refusal
    assert ledger.counts() == []
    ledger.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ledger.sqlite3", "ledger.sqlite3.lock"]


def test_a_ledger_that_cannot_be_made_leaves_nothing_beside_it(tmp_path, monkeypatch):
    """A failure while making a new ledger (a full disk at its fsync) is the run's error;
    the half-made file beside it goes too, not left for the user to wonder about."""
    import errno

    from retently_cli import ledger as ledger_module

    path = tmp_path / "ledger.sqlite3"

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ledger_module.os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        Ledger(path)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ledger.sqlite3.lock"]
    ledger = Ledger(path)  # the next run makes it whole
    assert ledger.counts() == []
    ledger.close()


@pytest.mark.parametrize("rows", [1, 3000])
def test_a_ledger_removed_without_its_wal_is_made_afresh_not_from_that_wal(tmp_path, rows):
    """Someone deletes a ledger whose -wal file still holds commits (a run killed mid-way):
    the new ledger made at its path must not take those pages for its own."""
    path = tmp_path / "ledger.sqlite3"
    ledger = Ledger(path)
    ledger.begin([(f"k{i}", NPS, f"u{i}@x.com", None) for i in range(rows)])
    ledger.settle(sent=[(f"k{i}", NPS, 200) for i in range(rows)], uncertain=[], not_sent=[])
    wal = Path(f"{path}-wal")
    old_wal = wal.read_bytes()  # as a SIGKILL would leave it: no checkpoint, no clean-up
    ledger.close()
    assert len(old_wal) > 0
    path.unlink()
    wal.write_bytes(old_wal)

    fresh = Ledger(path)  # no "damaged" refusal, and no surveys it never sent
    assert fresh.counts() == []
    fresh.begin([("new", NPS, "new@x.com", None)])
    fresh.settle(sent=[("new", NPS, 200)], uncertain=[], not_sent=[])
    fresh.close()
    again = Ledger(path)
    assert again.counts() == [(NPS, "sent", 1)]
    again.close()
