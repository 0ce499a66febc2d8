"""Who a Track event without an email is: identities learned from Identify calls.

Segment's destination read the email from a Track call's ``properties`` only, yet many Track
calls carry just a ``userId``: the email lives in the user's Identify calls (``traits.email``),
or in ``context.traits`` of any call. With ``identities: {from_identify: true}`` a first pass
over the inputs feeds every message to an ``IdentityStore``, which keeps, per userId and per
anonymousId, the latest value of each field (email, first_name, last_name, company) by the
message's time; a tie goes to the message read later, and a message with no readable time
loses to any that has one. The matcher then asks the store about events whose ``email_paths``
find nothing (``lookup``): the userId's identity, else the anonymousId's.

Memory stays bounded: up to ``MEMORY_LIMIT`` ids live in a dict; beyond that they all move to
a temporary SQLite database, which SQLite deletes itself when it is closed or the process ends.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import click

from retently_cli.errors import UsageFailure
from retently_cli.logs import get_logger
from retently_cli.pruning import Window
from retently_cli.readers import BadInput, ReadStats, iter_messages
from retently_cli.remote import RemoteError
from retently_cli.sources import Inputs, Selection
from retently_cli.timeparse import EVENT_TIME_FIELDS, parse_time

log = get_logger(__name__)

MEMORY_LIMIT = 200_000  # ids held in memory before the store moves to a temporary SQLite file
USER, ANONYMOUS = "userId", "anonymousId"
FIELDS = ("email", "first_name", "last_name", "company")
# Trait names per field, as subscriber.py reads them from a Track call's properties.
TRAIT_NAMES = (("email",), ("firstName", "first_name"), ("lastName", "last_name"),
               ("companyName", "company"))  # fmt: skip
_ID_KINDS = ((USER, "u:"), (ANONYMOUS, "a:"))
_NO_TIME = -(2**62)  # below every real time, in microseconds
_FLUSH_EVERY = 10_000
_UPSERT = (
    "INSERT INTO identity VALUES (?, ?, ?, ?) ON CONFLICT (id, field) DO UPDATE "
    "SET time = excluded.time, value = excluded.value WHERE excluded.time >= identity.time"
)


@dataclass(frozen=True, slots=True)
class Identity:
    """What is known of one user; ``source`` says which id it was found by."""

    email: str
    first_name: str | None
    last_name: str | None
    company: str | None
    source: str  # "identify:userId" or "identify:anonymousId"


class IdentityStore:
    def __init__(self, memory_limit: int | None = None):
        self.memory_limit = MEMORY_LIMIT if memory_limit is None else memory_limit
        # "u:<userId>" / "a:<anonymousId>" -> [time, email, time, first_name, ...]
        self._memory: dict[str, list] = {}
        self._db: sqlite3.Connection | None = None
        self._pending: list[tuple] = []

    @property
    def spilled(self) -> bool:
        return self._db is not None

    def count(self) -> int:
        """How many ids (userIds and anonymousIds) are known."""
        if self._db is None:
            return len(self._memory)
        self._flush()
        return self._db.execute("SELECT COUNT(DISTINCT id) FROM identity").fetchone()[0]

    def learn(self, message: dict) -> None:
        """Take what ``message`` says about its user: ``context.traits`` of any call, then the
        ``traits`` of an Identify call (which win within the message). Called for every
        message of the input, so what says nothing is passed over early."""
        context = message.get("context")
        shared = context.get("traits") if type(context) is dict else None
        own = message.get("traits") if message.get("type") == "identify" else None
        if not shared and not own:
            return
        values = _identity_fields(shared, own)
        if values is None:
            return
        time = _time(message)
        for kind, prefix in _ID_KINDS:
            known = _id(message.get(kind))
            if known is not None:
                self._put(prefix + known, time, values)

    def lookup(self, message: dict) -> Identity | None:
        """The identity of ``message``'s userId when it has an email, else its anonymousId's."""
        for kind, prefix in _ID_KINDS:
            known = _id(message.get(kind))
            if known is None:
                continue
            fields = self._fields(prefix + known)
            if fields is not None and fields[0] is not None:
                email, first_name, last_name, company = fields
                return Identity(email, first_name, last_name, company, f"identify:{kind}")
        return None

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        self._memory.clear()

    # -- keeping ---------------------------------------------------------------------------

    def _put(self, key: str, time: int, values: list) -> None:
        if self._db is not None:
            self._pending.extend(
                (key, i, time, value) for i, value in enumerate(values) if value is not None
            )
            if len(self._pending) >= _FLUSH_EVERY:
                self._flush()
            return
        entry = self._memory.get(key)
        if entry is None:
            if len(self._memory) >= self.memory_limit:
                self._spill()
                self._put(key, time, values)
                return
            entry = self._memory[key] = [_NO_TIME, None] * len(FIELDS)
        for i, value in enumerate(values):
            if value is not None and (entry[2 * i + 1] is None or time >= entry[2 * i]):
                entry[2 * i], entry[2 * i + 1] = time, value

    def _fields(self, key: str) -> list | None:
        if self._db is None:
            entry = self._memory.get(key)
            return None if entry is None else entry[1::2]
        self._flush()
        rows = self._db.execute("SELECT field, value FROM identity WHERE id = ?", (key,))
        fields = [None] * len(FIELDS)
        found = False
        for field, value in rows:
            fields[field], found = value, True
        return fields if found else None

    def _spill(self) -> None:
        """Move every identity to a temporary SQLite database ("" is one that SQLite deletes
        itself), bounded in memory by its page cache."""
        self._db = sqlite3.connect("")
        self._db.execute("PRAGMA cache_size = -16384")  # KiB: 16 MiB of pages at most
        self._db.execute(
            "CREATE TABLE identity (id TEXT, field INTEGER, time INTEGER, value TEXT, "
            "PRIMARY KEY (id, field)) WITHOUT ROWID"
        )
        for key, entry in self._memory.items():
            self._pending.extend(
                (key, i, entry[2 * i], entry[2 * i + 1])
                for i in range(len(FIELDS))
                if entry[2 * i + 1] is not None
            )
            if len(self._pending) >= _FLUSH_EVERY:
                self._flush()
        self._memory.clear()
        self._flush()

    def _flush(self) -> None:
        if self._pending:
            assert self._db is not None  # opened by the spill that filled _pending
            with self._db:
                self._db.executemany(_UPSERT, self._pending)
            self._pending.clear()


def _identity_fields(*sources) -> list | None:
    """[email, first_name, last_name, company] as the traits ``sources`` give them (a later
    one wins), or None if they give none."""
    found: list[str | None] | None = None
    for traits in sources:
        if type(traits) is not dict:
            continue
        for i, names in enumerate(TRAIT_NAMES):
            for name in names:
                value = traits.get(name)
                if type(value) is dict and name == "company":  # Segment's spec: {name, id, ...}
                    value = value.get("name")
                if type(value) is str and value.strip():
                    if found is None:
                        found = [None] * len(FIELDS)
                    found[i] = value.strip()
                    break
    return found


def _time(message: dict) -> int:
    """The message's time in microseconds, as ``timeparse.event_time`` reads it (Python's own
    ISO-8601 parser first: it is many times faster, and most times are tidy)."""
    for name in EVENT_TIME_FIELDS:
        text = message.get(name)
        if type(text) is not str:
            continue
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            parsed = parse_time(text)
            if parsed is None:
                continue
            when = parsed
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return int(when.timestamp() * 1_000_000)
    return _NO_TIME


def _id(value) -> str | None:
    """A userId or anonymousId as a key: a non-empty string, or a whole number (``12`` and
    ``"12"`` are one user, as Segment's libraries turn ids into strings)."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return None


# -- the first pass ----------------------------------------------------------------------------


def rereading_problem(inputs) -> str | None:
    """Why ``inputs`` (a ``sources.Inputs``) cannot be read a second time, or None."""
    if inputs.reads_stdin:
        return (
            "identities.from_identify reads the input twice (identify calls first), "
            "and stdin cannot be read twice: give the files or folders instead"
        )
    for path in inputs.local_files():
        try:
            mode = os.stat(path).st_mode
        except OSError:
            continue  # reading it reports it
        if not stat.S_ISREG(mode):
            return (
                f"{path}: identities.from_identify reads the input twice (identify calls "
                "first), and this is not a regular file, so it cannot be read twice"
            )
    return None


def identity_window(window: Window | None) -> Window | None:
    """The folders the identity pass opens: no day folder before ``--since`` is left out (an
    Identify call may be years older than the events it names), and the folders after
    ``--until`` and its lateness are left out as the main pass leaves them out."""
    if window is None or window.until is None:
        return None
    return replace(window, since=None)


def learn_identities(
    inputs, store: IdentityStore | None = None, check: Callable[[], None] = lambda: None
) -> tuple[IdentityStore, ReadStats]:
    """Feed every message of ``inputs`` to ``store``. Malformed lines are passed over: the
    main pass reports them. ``check`` is called at each source, each line and each wait (an
    interrupt raises there)."""
    store = IdentityStore() if store is None else store
    stats = ReadStats()
    learn = store.learn
    for _, _, item in iter_messages(inputs, stats, check, lambda source: check()):
        check()
        if type(item) is not BadInput:
            learn(item)
    return store, stats


def identities_for_run(
    configs,
    paths,
    max_line_bytes: int,
    selection: Selection | None,
    check: Callable[[], None] = lambda: None,
) -> Callable[[dict], Identity | None] | None:
    """The identity lookup for a run whose configs ask for it (else None), learned from ``paths``
    as the run will read them (``selection``, with ``identity_window``). Inputs that cannot be
    read twice are refused here, exit 2, before anything is read or sent. The store is closed
    when the command ends. ``check``: as ``learn_identities``'."""
    if not any(config.from_identify for config in configs):
        return None
    selection = selection or Selection()
    selection = replace(selection, window=identity_window(selection.window), pruned_folders=0)
    try:  # walk warnings are the main pass's to give
        inputs = Inputs(paths, sys.stdin.buffer, lambda text: None, max_line_bytes, selection)
    except RemoteError as exc:
        raise UsageFailure([str(exc)]) from None
    problem = rereading_problem(inputs)
    if problem is not None:
        raise UsageFailure([problem])
    log.info("identities: reading the inputs for identify calls first")
    store, stats = learn_identities(inputs, check=check)
    context = click.get_current_context(silent=True)
    if context is not None:
        context.call_on_close(store.close)
    if log.isEnabledFor(logging.INFO):
        where = "a temporary SQLite file" if store.spilled else "memory"
        count, lines = store.count(), stats.lines
        log.info(
            "identities: %s ids learned from %s lines (in %s)", f"{count:,}", f"{lines:,}", where
        )
    return store.lookup
