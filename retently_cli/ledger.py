"""The delivery ledger: a SQLite file remembering each (event, campaign) surveyed, across runs.

A row is written as ``pending`` and committed *before* its request is sent, then becomes
``sent``, or ``uncertain`` when the connection broke after the request went out, or is deleted
when the request surely did not take effect (so a later run sends it). A run that died leaves
``pending`` rows behind; the next run treats them as uncertain and does not resend them unless
asked to. SQLite's transactions keep the file consistent whatever moment the process is killed.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

from retently_cli.config import DEFAULT_BASE_URL, _is_loopback
from retently_cli.matching import event_key  # noqa: F401  (the ledger's key, re-exported)
from retently_cli.vocabulary import EnvVar, Outcome

PENDING = "pending"
SENT = Outcome.SENT
UNCERTAIN = Outcome.UNCERTAIN
LEDGER_ENV = EnvVar.LEDGER

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    event_key  TEXT NOT NULL,     -- the messageId, or sha256: of the event's canonical JSON
    campaign   TEXT NOT NULL,
    state      TEXT NOT NULL,     -- pending, sent or uncertain
    email_hash TEXT NOT NULL,     -- sha256 of the lower-cased email, for once_per_email
    event_time REAL,              -- when the event happened (epoch seconds), if known
    updated_at REAL NOT NULL,
    status     INTEGER,           -- the HTTP status of the delivery
    retried    INTEGER NOT NULL DEFAULT 0,  -- pending again after being uncertain
    email      TEXT,              -- the address surveyed, for `ledger list` (none before 0.3)
    event      TEXT,              -- the event's name, for `ledger list` (none before 0.3)
    PRIMARY KEY (event_key, campaign)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deliveries_by_email ON deliveries (campaign, email_hash);
"""


def default_ledger_path(
    base_url: str = DEFAULT_BASE_URL, environ=None, notify=None, adopt: bool = True
) -> Path:
    """``$RETENTLY_LEDGER``, else a file in the user's data directory. Another API address
    (the fake server, say) gets a file of its own, so trials never mark real surveys sent;
    every spelling of one address gets the same file (see ``_ledger_name``). A ledger still
    under the name an older version gave this address is renamed (``notify`` is told), unless
    ``adopt`` is false (a command that only reads): then that old file is the ledger."""
    env = os.environ if environ is None else environ
    if env.get(LEDGER_ENV):
        return Path(env[LEDGER_ENV])
    from platformdirs import user_data_path

    folder = user_data_path("retently-cli", appauthor=False)
    path = folder / _ledger_name(base_url)
    old = folder / _old_ledger_name(base_url)
    if path.exists() or old == path or not old.exists():
        return path
    if not adopt:
        return old
    return _adopt(old, path, notify or _tell_stderr)


def _old_ledger_name(base_url: str) -> str:
    """The name versions before the normalised one gave, for this spelling of the address."""
    if base_url.rstrip("/") == DEFAULT_BASE_URL:
        return "ledger.sqlite3"
    parts = urlsplit(base_url)
    return f"ledger-{parts.hostname}-{parts.port or parts.scheme}.sqlite3"


def _adopt(old: Path, path: Path, notify) -> Path:
    """Rename the old ledger (its -wal and -shm first, the file itself last, so that a crash
    in between is finished by the next run) unless a run holds it: then it stays in use."""
    try:
        lock = _exclusive(old.with_name(old.name + ".lock"))
    except (LedgerBusy, OSError):
        return old
    try:
        if not old.exists():  # another run renamed it meanwhile
            return path
        for suffix in ("-wal", "-shm"):
            if Path(f"{old}{suffix}").exists():
                os.rename(f"{old}{suffix}", f"{path}{suffix}")
        os.rename(old, path)
    except OSError:
        return old if old.exists() else path
    finally:
        lock.close()
    notify(f"retently: ledger {old} renamed to {path} (this version's name for the address)")
    return path


def _tell_stderr(line: str) -> None:
    print(line, file=sys.stderr)


def _ledger_name(base_url: str) -> str:
    """The address normalised: scheme, lower-case host, default port dropped, one name for
    this machine. The default address keeps the name it always had, ``ledger.sqlite3``, and
    loopback keeps the one the fake server's address had (``127.0.0.1``)."""
    parts = urlsplit(base_url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    if _is_loopback(host):
        host = "127.0.0.1"
    port = parts.port if parts.port != _DEFAULT_PORTS.get(scheme) else None
    if (scheme, host, port) == _DEFAULT_ADDRESS:
        return "ledger.sqlite3"
    return f"ledger-{host}-{port or scheme}.sqlite3"


_DEFAULT_PORTS = {"http": 80, "https": 443}
_DEFAULT_ADDRESS = ("https", urlsplit(DEFAULT_BASE_URL).hostname, None)


def email_hash(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


class Entry(NamedTuple):
    """One survey as the ledger holds it (``email`` and ``event`` are None in rows recorded
    before version 0.3, which kept only the email's hash)."""

    key: str
    campaign: str
    state: str
    email: str | None
    event: str | None
    event_time: float | None
    updated_at: float
    status: int | None


@dataclass
class Resolved:
    settled: int = 0  # surveys whose delivery was unknown, now settled
    left: int = 0  # surveys named that were not uncertain: left as they were
    unknown: int = 0  # surveys named that the ledger does not hold


def lock_holder(path: Path) -> str | None:
    """Who holds the ledger's lock (a sending run), else None. Creates nothing: a ledger
    without a lock file has never been written."""
    file = Path(os.path.realpath(path))
    try:
        handle = open(file.with_name(file.name + ".lock"))
    except OSError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return handle.read().strip() or "another process"
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


class LedgerBusy(Exception):
    """Another run is using the ledger: two runs at once could both send the same survey."""


class LedgerInvalid(Exception):
    """The file at the ledger's path is not a usable ledger. It is refused, never started
    afresh: a fresh ledger would forget every survey sent, and the next run would resend them."""


class LedgerLost(Exception):
    """The ledger file vanished, was replaced or emptied while a run used it: what is sent
    from then on could not be remembered, so the run stops sending."""


class Ledger:
    """Thread-safe: delivery workers write, the reading thread looks up.

    A writing run holds an exclusive lock (``<ledger>.lock``, next to the file the path leads
    to, whatever symlinks it goes through) until it ends, however it ends: the system drops
    the lock of a process that dies, so a crash leaves no stale lock. Before each write it
    checks that the path still leads to the file it opened.
    """

    def __init__(self, path: Path, read_only: bool = False):
        self.path = Path(path)
        self.file = Path(os.path.realpath(path))  # one file, one lock, whatever its alias
        self.read_only = read_only
        self.lost: LedgerLost | None = None
        self.without_wal = False  # read-only, and records only the -wal file holds are unseen
        self._lock_file = None
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None  # None once lost with nothing left to read (_check)
        if read_only:
            _check_header(self.path, self.file)
            self._db = self._open_read_only()
            _check_contents(self.path, self._db)
        else:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            self._lock_file = _exclusive(self.file.with_name(self.file.name + ".lock"))
            try:
                self._db = self._open_for_writing()
            except BaseException:
                self._lock_file.close()
                raise
        self._identity = _identity(os.stat(self.file))

    def _open_for_writing(self) -> sqlite3.Connection:
        if not self.file.exists():
            _create(self.file)
        _check_header(self.path, self.file)
        db = _connect(self.file)
        try:
            _check_contents(self.path, db)
            _upgrade(db)
        except BaseException:
            db.close()
            raise
        return db

    def _open_read_only(self) -> sqlite3.Connection:
        """``mode=ro``; if even that needs a write (the WAL's ``-shm`` file cannot be created
        in a read-only folder), the file as it is, without what only the WAL holds."""
        uri = self.file.as_uri()
        db = sqlite3.connect(f"{uri}?mode=ro", uri=True, check_same_thread=False)
        try:
            db.execute("PRAGMA busy_timeout=10000")
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return db
        except sqlite3.OperationalError:
            db.close()
        wal = Path(f"{self.file}-wal")
        self.without_wal = wal.exists() and wal.stat().st_size > 0
        return sqlite3.connect(f"{uri}?immutable=1", uri=True, check_same_thread=False)

    @classmethod
    def open_for_dry_run(cls, path: Path) -> Ledger | None:
        """A dry-run reads the ledger if there is one and never creates or changes it."""
        return cls(path, read_only=True) if Path(path).exists() else None

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
        if self._lock_file is not None:
            self._lock_file.close()

    def verify(self) -> LedgerLost | None:
        """Whether the ledger was lost under this run (checked now, if it is writing)."""
        if self.read_only:
            return None
        with self._lock:
            self._check()
        return self.lost

    def state(self, key: str, campaign: str) -> str | None:
        with self._lock:
            if self._db is None:  # lost: nothing will be sent any more anyway
                return None
            row = self._db.execute(
                "SELECT state FROM deliveries WHERE event_key = ? AND campaign = ?",
                (key, campaign),
            ).fetchone()
        return row[0] if row else None

    def states(self) -> dict[str, int]:
        """Rows per state (pending, sent, uncertain), for the plan a send shows first."""
        with self._lock:
            if self._db is None:
                return {}
            rows = self._db.execute("SELECT state, count(*) FROM deliveries GROUP BY state")
            return dict(rows.fetchall())

    def event_times(self, campaign: str, email: str, but: str = "") -> list[float]:
        """Event times (else record times) of the surveys recorded in any state for this email
        and campaign, except the event ``but``."""
        with self._lock:
            if self._db is None:
                return []
            rows = self._db.execute(
                "SELECT event_time, updated_at FROM deliveries "
                "WHERE campaign = ? AND email_hash = ? AND event_key != ?",
                (campaign, email_hash(email), but),
            ).fetchall()
        return [event_time if event_time is not None else updated for event_time, updated in rows]

    def counts(self) -> list[tuple[str, str, int]]:
        """(campaign, state, surveys), for ``ledger status``."""
        with self._lock:
            db = self._connection()
            return db.execute(
                "SELECT campaign, state, count(*) FROM deliveries "
                "GROUP BY campaign, state ORDER BY campaign, state"
            ).fetchall()

    def sent_between(self) -> tuple[float | None, float | None]:
        """When the first and the last survey recorded as sent were recorded."""
        with self._lock:
            db = self._connection()
            return db.execute(
                "SELECT min(updated_at), max(updated_at) FROM deliveries WHERE state = 'sent'"
            ).fetchone()

    def entries(self, states: Iterable[str] = (), campaign: str | None = None):
        """The rows, oldest record first, as ``Entry``s, fetched a thousand at a time."""
        db = self._connection()
        columns = {row[1] for row in db.execute("PRAGMA table_info(deliveries)")}
        optional = ", ".join(name if name in columns else "NULL" for name in ("email", "event"))
        where, args = [], []
        states = list(states)
        if states:
            where.append(f"state IN ({', '.join('?' for _ in states)})")
            args += states
        if campaign is not None:
            where.append("campaign = ?")
            args.append(campaign)
        query = (
            f"SELECT event_key, campaign, state, {optional}, event_time, updated_at, status "
            "FROM deliveries"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + " ORDER BY updated_at, event_key, campaign"
        )
        cursor = db.execute(query, args)
        while rows := cursor.fetchmany(1000):
            yield from (Entry(*row) for row in rows)

    def resolve(self, surveys: Iterable[tuple[str, str | None]] | None, sent: bool) -> Resolved:
        """Settle surveys whose delivery is unknown (uncertain, or pending from a run that
        died: this ledger is locked, so no run has them in flight). ``surveys``: (key,
        campaign, or None for each of the event's campaigns); None for all of them. Marked
        sent, they are never sent again; marked not sent, they are forgotten, so the next run
        sends them. Surveys in another state are left as they are."""
        done = Resolved()

        def write(db):
            change = (
                "UPDATE deliveries SET state = 'sent', retried = 0"
                if sent
                else "DELETE FROM deliveries"
            )
            unsettled = "state IN ('pending', 'uncertain')"
            if surveys is None:
                done.settled = db.execute(f"{change} WHERE {unsettled}").rowcount
                return
            for key, campaign in dict.fromkeys(surveys):
                where, args = "event_key = ?", [key]
                if campaign is not None:
                    where, args = where + " AND campaign = ?", args + [campaign]
                states = [
                    r[0] for r in db.execute(f"SELECT state FROM deliveries WHERE {where}", args)
                ]
                if not states:
                    done.unknown += 1
                    continue
                done.settled += db.execute(f"{change} WHERE {where} AND {unsettled}", args).rowcount
                done.left += sum(state not in (PENDING, UNCERTAIN) for state in states)

        with self._lock:
            self._check()
            if self.lost is not None:
                raise self.lost
            self._transaction(write)
        return done

    def begin(self, rows: Iterable[tuple]) -> None:
        """Record (key, campaign, email, event time[, event name]) as pending, durably, before
        sending.

        A row that was pending or uncertain (``--retry-uncertain``) is marked as retried, so
        that a retry which surely did not go out leaves it uncertain rather than forgotten.
        Raises ``LedgerLost`` (and keeps raising it) once the file is not the one opened."""
        now = time.time()
        rows = [
            (key, campaign, email_hash(email), when, now, email, event[0] if event else None)
            for key, campaign, email, when, *event in rows
        ]
        with self._lock:
            self._check()
            if self.lost is not None:
                raise self.lost
            self._transaction(
                lambda db: db.executemany(
                    "INSERT INTO deliveries "
                    "(event_key, campaign, state, email_hash, event_time, updated_at, email, "
                    "event) VALUES (?, ?, 'pending', ?, ?, ?, ?, ?) "
                    "ON CONFLICT (event_key, campaign) DO UPDATE SET "
                    "state = 'pending', updated_at = excluded.updated_at, "
                    "email = excluded.email, event = coalesce(excluded.event, deliveries.event), "
                    "retried = (deliveries.state IN ('pending', 'uncertain'))",
                    rows,
                )
            )

    def settle(
        self,
        sent: Iterable[tuple[str, str, int | None]],
        uncertain: Iterable[tuple[str, str]],
        not_sent: Iterable[tuple[str, str]],
    ) -> None:
        """Record how the requests ended. After a loss, into the copy that was saved."""
        now = time.time()
        sent_rows = [(status, now, key, campaign) for key, campaign, status in sent]
        uncertain_rows = [(now, key, campaign) for key, campaign in uncertain]
        not_sent = list(not_sent)

        def write(db):
            db.executemany(
                "UPDATE deliveries SET state = 'sent', status = ?, updated_at = ?, retried = 0 "
                "WHERE event_key = ? AND campaign = ?",
                sent_rows,
            )
            db.executemany(
                "UPDATE deliveries SET state = 'uncertain', updated_at = ?, retried = 0 "
                "WHERE event_key = ? AND campaign = ?",
                uncertain_rows,
            )
            db.executemany(
                "UPDATE deliveries SET state = 'uncertain', retried = 0 "
                "WHERE event_key = ? AND campaign = ? AND state = 'pending' AND retried",
                not_sent,
            )
            db.executemany(
                "DELETE FROM deliveries WHERE event_key = ? AND campaign = ? AND state = 'pending'",
                not_sent,
            )

        with self._lock:
            self._check()
            if self._db is None:  # lost, and nothing was saved to record into
                assert self.lost is not None
                raise self.lost
            self._transaction(write)

    def _connection(self) -> sqlite3.Connection:
        """The connection, where the caller knows it is open: the ledger is read-only, or the
        caller raised ``lost`` already (the connection goes only with a loss)."""
        assert self._db is not None, "the ledger was lost"
        return self._db

    def _transaction(self, write) -> None:
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            write(db)
        except BaseException:
            if db.in_transaction:  # SQLite rolls back itself on some errors (a full disk)
                db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _check(self) -> None:
        """Is the path still the file opened? A cheap stat, before each write. If not, save
        what the open file knows (see ``_rescue``) and remember the loss."""
        if self.read_only or self.lost is not None:
            return
        try:
            now = os.stat(self.file)
        except OSError:  # gone, or a folder on its path is a file now
            problem = "was deleted"
        else:
            if _identity(now) != self._identity:
                problem = "was replaced by another file"
            elif now.st_size == 0:
                problem = "was emptied"
            else:
                return
        where = self._rescue() if problem != "was emptied" else None
        if where is None and self._db is not None:  # nothing left worth reading or writing
            self._db.close()
            self._db = None
        if where == self.file:
            saved = f"what it held is back at {self.path}"
        elif where is not None:
            saved = f"what it held is saved in {where}: put it back as {self.path} before a re-run"
        else:
            saved = "what it held is lost: a re-run may survey again whom this run surveyed"
        self.lost = LedgerLost(
            f"ledger {self.path} {problem} while this run was using it: sending stopped; {saved}"
        )

    def _rescue(self) -> Path | None:
        """Copy the open (deleted or replaced) file to its path if that is free, else next to
        it, and go on with the copy, so the surveys still in flight are recorded there."""
        aside = self.file.with_name(f"{self.file.name}.rescued-{os.getpid()}")
        old = self._connection()  # _check comes here only before a loss
        try:
            copy = sqlite3.connect(aside)
            try:
                old.backup(copy)
            finally:
                copy.close()
            old.close()
            self._db = None
            try:
                os.link(aside, self.file)
            except FileExistsError:
                where = aside
            else:
                os.unlink(aside)
                where = self.file
            self._db = _connect(where)
        except (OSError, sqlite3.Error):
            if self._db is not None:
                self._db.close()
                self._db = None
            return None
        return where


APPLICATION_ID = 0x52544C47  # "RTLG" in the database header: this file is a retently ledger
_SQLITE_MAGIC = b"SQLite format 3\x00"
_COLUMNS = {"event_key", "campaign", "state", "email_hash", "event_time", "updated_at"}


def _identity(stat: os.stat_result) -> tuple[int, int]:
    return stat.st_dev, stat.st_ino


def _connect(file: Path) -> sqlite3.Connection:
    db = sqlite3.connect(file, check_same_thread=False, isolation_level=None)
    try:
        db.execute("PRAGMA busy_timeout=10000")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # a committed 'pending' survives a crash
    except sqlite3.OperationalError:
        db.close()
        raise
    except sqlite3.DatabaseError as exc:
        db.close()
        raise _damaged(file, exc) from None
    return db


def _create(file: Path) -> None:
    """A new, empty ledger at ``file``, made whole beside it and then linked into place, so a
    run killed while making it leaves no ledger, not a half-made one that the next run must
    refuse (an empty or unmarked file there may be a ledger that lost its contents). Called
    under the ledger's lock, so the file beside is this run's alone."""
    making = file.with_name(file.name + ".creating")
    for leftover in ("", "-journal", "-wal", "-shm"):  # from a run killed while making it
        Path(f"{making}{leftover}").unlink(missing_ok=True)
    try:
        db = sqlite3.connect(making, isolation_level=None)
        try:
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA application_id={APPLICATION_ID}")
            db.execute("PRAGMA journal_mode=WAL")
        finally:
            db.close()
        with open(making, "rb") as made:
            os.fsync(made.fileno())
    except BaseException:  # a full disk, say: the run says why, and leaves nothing half-made
        _remove_made(making)
        raise
    # A -wal or -shm left by a ledger deleted without them would be read as this one's own:
    # its commits replayed onto the new file, as records it never made, or as damage.
    for leftover in ("-journal", "-wal", "-shm"):
        Path(f"{file}{leftover}").unlink(missing_ok=True)
    try:
        os.link(making, file)  # never over a file that appeared meanwhile
    except FileExistsError:
        pass
    except OSError:  # a file system without hard links
        if not file.exists():
            os.rename(making, file)
    making.unlink(missing_ok=True)
    _sync_folder(file.parent)


def _remove_made(making: Path) -> None:
    """What making a ledger at ``making`` left, as far as it can be removed."""
    for leftover in ("", "-journal", "-wal", "-shm"):
        try:
            Path(f"{making}{leftover}").unlink(missing_ok=True)
        except OSError:
            pass


def _sync_folder(folder: Path) -> None:
    """The folder's entries on disk, so the new name survives a power cut."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _check_header(path: Path, file: Path) -> None:
    """Refuse, before SQLite touches it, a file that is plainly no SQLite database."""
    with open(file, "rb") as f:
        head = f.read(len(_SQLITE_MAGIC))
    if not head:
        raise LedgerInvalid(f"ledger {path} is empty (0 bytes): not a retently ledger")
    if head != _SQLITE_MAGIC:
        raise LedgerInvalid(f"ledger {path} is not an SQLite database: not a retently ledger")


def _check_contents(path: Path, db: sqlite3.Connection) -> None:
    """The ledger's marker or table, and every page readable (a quick check reads them all
    once, so damage is found now rather than by a lookup halfway through a run)."""
    try:
        marker = db.execute("PRAGMA application_id").fetchone()[0]
        columns = {row[1] for row in db.execute("PRAGMA table_info(deliveries)")}
        problems = [row[0] for row in db.execute("PRAGMA quick_check")]
    except sqlite3.OperationalError:
        raise
    except sqlite3.DatabaseError as exc:
        raise _damaged(path, exc) from None
    if marker not in (0, APPLICATION_ID) or not _COLUMNS <= columns:
        raise LedgerInvalid(f"ledger {path} is an SQLite database, but not a retently ledger")
    if problems != ["ok"]:
        raise _damaged(path, problems[0])


def _damaged(path: Path, problem) -> LedgerInvalid:
    return LedgerInvalid(f"ledger {path} is damaged ({problem}): not a retently ledger any more")


def _upgrade(db: sqlite3.Connection) -> None:
    """A ledger of an earlier version: mark it, and add the columns it did not have yet."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(deliveries)")}
    if "retried" not in columns:
        db.execute("ALTER TABLE deliveries ADD COLUMN retried INTEGER NOT NULL DEFAULT 0")
    for name in ("email", "event"):
        if name not in columns:
            db.execute(f"ALTER TABLE deliveries ADD COLUMN {name} TEXT")
    if db.execute("PRAGMA application_id").fetchone()[0] == 0:
        db.execute(f"PRAGMA application_id={APPLICATION_ID}")


def _exclusive(lock_path: Path):
    handle = open(lock_path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise LedgerBusy(
            f"another run is using this ledger ({holder}); two runs at once could survey "
            "the same customer twice"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    return handle
