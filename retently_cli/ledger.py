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
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from retently_cli.config import DEFAULT_BASE_URL
from retently_cli.matching import event_key  # noqa: F401  (the ledger's key, re-exported)

PENDING = "pending"
SENT = "sent"
UNCERTAIN = "uncertain"
LEDGER_ENV = "RETENTLY_LEDGER"

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
    PRIMARY KEY (event_key, campaign)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deliveries_by_email ON deliveries (campaign, email_hash);
"""


def default_ledger_path(base_url: str = DEFAULT_BASE_URL, environ=None) -> Path:
    """``$RETENTLY_LEDGER``, else a file in the user's data directory. Another API address
    (the fake server, say) gets a file of its own, so trials never mark real surveys sent."""
    env = os.environ if environ is None else environ
    if env.get(LEDGER_ENV):
        return Path(env[LEDGER_ENV])
    from platformdirs import user_data_path

    name = "ledger.sqlite3"
    if base_url.rstrip("/") != DEFAULT_BASE_URL:
        parts = urlsplit(base_url)
        name = f"ledger-{parts.hostname}-{parts.port or parts.scheme}.sqlite3"
    return user_data_path("retently-cli", appauthor=False) / name


def email_hash(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


class LedgerBusy(Exception):
    """Another run is using the ledger: two runs at once could both send the same survey."""


class Ledger:
    """Thread-safe: delivery workers write, the reading thread looks up.

    A writing run holds an exclusive lock (``<ledger>.lock``) until it ends, however it ends:
    the system drops the lock of a process that dies, so a crash leaves no stale lock.
    """

    def __init__(self, path: Path, read_only: bool = False):
        self.path = path
        self.read_only = read_only
        self._lock_file = None
        if read_only:
            uri = f"{path.resolve().as_uri()}?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, check_same_thread=False)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_file = _exclusive(path.with_name(path.name + ".lock"))
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # a committed 'pending' survives a crash
            self._db.executescript(_SCHEMA)
        self._db.execute("PRAGMA busy_timeout=10000")
        self._lock = threading.Lock()

    @classmethod
    def open_for_dry_run(cls, path: Path) -> Ledger | None:
        """A dry-run reads the ledger if there is one and never creates or changes it."""
        return cls(path, read_only=True) if path.exists() else None

    def close(self) -> None:
        with self._lock:
            self._db.close()
        if self._lock_file is not None:
            self._lock_file.close()

    def state(self, key: str, campaign: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT state FROM deliveries WHERE event_key = ? AND campaign = ?",
                (key, campaign),
            ).fetchone()
        return row[0] if row else None

    def event_times(self, campaign: str, email: str, but: str = "") -> list[float]:
        """Event times (else record times) of the surveys recorded in any state for this email
        and campaign, except the event ``but``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT event_time, updated_at FROM deliveries "
                "WHERE campaign = ? AND email_hash = ? AND event_key != ?",
                (campaign, email_hash(email), but),
            ).fetchall()
        return [event_time if event_time is not None else updated for event_time, updated in rows]

    def begin(self, rows: Iterable[tuple[str, str, str, float | None]]) -> None:
        """Record (key, campaign, email, event time) as pending, durably, before sending.

        A row that was pending or uncertain (``--retry-uncertain``) is marked as retried, so
        that a retry which surely did not go out leaves it uncertain rather than forgotten."""
        now = time.time()
        self._write(
            "INSERT INTO deliveries "
            "(event_key, campaign, state, email_hash, event_time, updated_at) "
            "VALUES (?, ?, 'pending', ?, ?, ?) "
            "ON CONFLICT (event_key, campaign) DO UPDATE SET "
            "state = 'pending', updated_at = excluded.updated_at, "
            "retried = (deliveries.state IN ('pending', 'uncertain'))",
            [(key, campaign, email_hash(email), when, now) for key, campaign, email, when in rows],
        )

    def settle(
        self,
        sent: Iterable[tuple[str, str, int | None]],
        uncertain: Iterable[tuple[str, str]],
        not_sent: Iterable[tuple[str, str]],
    ) -> None:
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "UPDATE deliveries SET state = 'sent', status = ?, updated_at = ?, retried = 0 "
                    "WHERE event_key = ? AND campaign = ?",
                    [(status, now, key, campaign) for key, campaign, status in sent],
                )
                self._db.executemany(
                    "UPDATE deliveries SET state = 'uncertain', updated_at = ?, retried = 0 "
                    "WHERE event_key = ? AND campaign = ?",
                    [(now, key, campaign) for key, campaign in uncertain],
                )
                not_sent = list(not_sent)
                self._db.executemany(
                    "UPDATE deliveries SET state = 'uncertain', retried = 0 "
                    "WHERE event_key = ? AND campaign = ? AND state = 'pending' AND retried",
                    not_sent,
                )
                self._db.executemany(
                    "DELETE FROM deliveries WHERE event_key = ? AND campaign = ? "
                    "AND state = 'pending'",
                    not_sent,
                )
            except BaseException:
                if self._db.in_transaction:  # SQLite rolls back itself on some errors (a full disk)
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _write(self, sql: str, rows: list) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(sql, rows)
            except BaseException:
                if self._db.in_transaction:  # SQLite rolls back itself on some errors (a full disk)
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")


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
