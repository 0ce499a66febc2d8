"""The matching engine: which campaigns an event triggers, and the customer it becomes.

Pure: it takes parsed events and returns decisions; it reads nothing, prints nothing and knows
nothing of the command line. It does keep the run's memory of messageIds already surveyed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from retently_cli.config import Campaign, Config
from retently_cli.first_sight import FirstSight as FirstSight
from retently_cli.first_sight import NearMisses as NearMisses
from retently_cli.first_sight import bounded_levenshtein as bounded_levenshtein
from retently_cli.first_sight import message_id_of as message_id_of
from retently_cli.first_sight import near_miss as near_miss
from retently_cli.subscriber import PropertyTypes, build_subscriber
from retently_cli.visible import CONTROL_CLASS
from retently_cli.vocabulary import Reason

if TYPE_CHECKING:  # identities reads files: the matching engine only takes what it finds
    from retently_cli.identities import Identity

# Reasons an event is not surveyed.
NOT_TRACK = Reason.NOT_TRACK
MISSING_EVENT = Reason.MISSING_EVENT
NO_CAMPAIGN = Reason.NO_CAMPAIGN
DUPLICATE = Reason.DUPLICATE
MISSING_EMAIL = Reason.MISSING_EMAIL
INVALID_EMAIL = Reason.INVALID_EMAIL
TOO_DEEP = Reason.TOO_DEEPLY_NESTED
RETENTLY_RECORD = Reason.RETENTLY_RECORD
_DEEP = "nested too deeply to be read or written back"
_OWN_RECORD = "a record written by retently (a report, dry-run or diff output), not an event"

# Where else an email commonly sits on a Track call (segment-inputs.md).
OTHER_EMAIL_PATHS = ("properties.email", "context.traits.email", "traits.email")

# No control characters either: they have no place in an address, and could reach a terminal.
_NOT_IN_EMAIL = re.compile(rf"[\s{CONTROL_CLASS}]")


@dataclass(slots=True)
class Decision:
    """One (event, campaign) outcome; ``reason`` is None when the customer is to be surveyed."""

    event: str | None
    message_id: str | None
    campaign: Campaign | None
    email: str | None
    reason: str | None
    detail: str | None = None
    subscriber: dict | None = None
    hint: str | None = None  # the mapped name a near-miss event name probably meant
    email_source: str | None = None  # where the email was found: "properties.email", ...
    key: str | None = None  # the event's ledger key (event_key), once computed for a survey


# Fields of a subscriber an identity fills in when the event gives none, with the property
# names that would have given them (an excluded one is not filled in either).
_IDENTITY_FILLS = (
    ("first_name", ("firstName", "first_name")),
    ("last_name", ("lastName", "last_name")),
    ("company", ("companyName", "company")),
)


class Matcher:
    """``identities`` looks up what Identify calls said of an event's user (an
    ``identities.Identity`` or None); it is used only when the config sets from_identify."""

    def __init__(
        self,
        config: Config,
        identities: Callable[[dict], Identity | None] | None = None,
        keys: KeyLog | None = None,
    ):
        self._by_event = config.campaigns_by_event()
        self._email_paths = [tuple(path.split(".")) for path in config.email_paths]
        self._other_paths = [
            (path, tuple(path.split(".")))
            for path in OTHER_EMAIL_PATHS
            if path not in config.email_paths
        ]
        self._exclude = config.exclude
        # The run's one type per property name: the same in a dry-run and a send.
        self.property_types = PropertyTypes(config.types)
        self.first_sight = FirstSight(self._by_event)
        self.skipped = self.first_sight.skipped
        self.passes_over = self.first_sight.passes_over
        self._near = self.first_sight.near
        self._surveyed = SeenKeys(keys)  # keys: where it keeps them (a run: KeysOnDisk)
        self._identities = identities if config.from_identify else None

    def decide(self, event: dict) -> list[Decision]:
        """The decisions for one event: one per campaign it triggers, else exactly one."""
        name = event.get("event")
        message_id = message_id_of(event)
        if "source" in event and "line" in event and "type" not in event:
            return [Decision(None, None, None, None, RETENTLY_RECORD, _OWN_RECORD)]
        if not is_track(event):
            kind = event.get("type")
            label = name if isinstance(name, str) else None
            what = f"{kind} call" if isinstance(kind, str) else "no type and no event name"
            return [Decision(label, message_id, None, None, NOT_TRACK, what)]
        if not isinstance(name, str) or not name:
            return [
                Decision(None, message_id, None, None, MISSING_EVENT, "a track with no event name")
            ]

        campaigns = self._by_event.get(name)
        if campaigns is None:
            hint = self._near.hint(name)
            return [Decision(name, message_id, None, None, NO_CAMPAIGN, near_miss(hint), hint=hint)]

        email, reason, detail, source, learned = self.locate_email(event)
        try:
            identity = event_key(event)
        except (RecursionError, orjson.JSONEncodeError):
            return [
                Decision(name, message_id, c, email, TOO_DEEP, _DEEP, email_source=source)
                for c in campaigns
            ]
        if not self._surveyed.add(identity):
            reason = DUPLICATE
            by_id = _message_id_key(event.get("messageId")) is not None
            detail = f"{'messageId' if by_id else 'the same event'} seen earlier in this run"
        if reason is not None:
            return [
                Decision(name, message_id, c, email, reason, detail, email_source=source)
                for c in campaigns
            ]

        assert email is not None  # locate_email finds one whenever it gives no reason
        properties = event.get("properties")
        try:
            subscriber, notes = build_subscriber(
                email,
                properties if isinstance(properties, dict) else {},
                self._exclude,
                self.property_types,
            )
        except RecursionError:
            return [
                Decision(name, message_id, c, email, TOO_DEEP, _DEEP, email_source=source)
                for c in campaigns
            ]
        if learned is not None:
            subscriber = self._fill_from(learned, subscriber)
        detail = "; ".join(notes) if notes else None
        return [
            Decision(
                name,
                message_id,
                c,
                email,
                None,
                detail,
                subscriber,
                email_source=source,
                key=identity,
            )
            for c in campaigns
        ]

    def find_email(self, event: dict) -> tuple[str | None, str | None, str | None]:
        """(email, None, None), or (email or None, missing_email or invalid_email, why)."""
        return self.locate_email(event)[:3]

    def locate_email(
        self, event: dict
    ) -> tuple[str | None, str | None, str | None, str | None, Identity | None]:
        """``find_email``'s answer, then where the email was found (a path, or
        ``identify:userId``) and the identity it came from (None when the event carries it)."""
        for path in self._email_paths:
            value = _lookup(event, path)
            if isinstance(value, str) and value.strip():
                email, source = value.strip(), ".".join(path)
                if _is_email(email):
                    return email, None, None, source, None
                return email, INVALID_EMAIL, f"{source} is not an email address", source, None
        identity = self._identities(event) if self._identities is not None else None
        if identity is not None:
            email, source = identity.email, identity.source
            if _is_email(email):
                return email, None, None, source, identity
            why = f"the email learned by {source} is not an email address"
            return email, INVALID_EMAIL, why, source, None
        elsewhere = self.email_elsewhere(event)
        if elsewhere is not None:
            why = f"email is at {elsewhere}, which email_paths does not list"
            return None, MISSING_EMAIL, why, None, None
        why = f"no email at {', '.join('.'.join(p) for p in self._email_paths)}"
        return None, MISSING_EMAIL, why, None, None

    def _fill_from(self, identity, subscriber: dict) -> dict:
        """The subscriber with the identity's names and company where the event gives none;
        the standard fields stay first, as a request body reads best."""
        filled = {"email": subscriber["email"]}
        for field, names in _IDENTITY_FILLS:
            if field in subscriber:
                filled[field] = subscriber[field]
            elif getattr(identity, field) and not self._exclude.intersection((field, *names)):
                filled[field] = getattr(identity, field)
        filled.update(subscriber)
        return filled

    def email_elsewhere(self, event: dict) -> str | None:
        """A common path outside ``email_paths`` where this event does carry an email."""
        for dotted, path in self._other_paths:
            value = _lookup(event, path)
            if isinstance(value, str) and value.strip():
                return dotted
        return None


_hash = hash  # of a str; tests replace it with one whose values meet


class SeenKeys:
    """The event keys seen in a run, exactly, in flat memory: 12 bytes each, whatever the key.

    Each key is written once to ``keys`` (a run's: ``KeysOnDisk``, a temporary file) and kept
    in memory as its 64-bit hash: 16 bits choose one of 65,536 buckets, and the other 48, with
    the six-byte place of the key in ``keys``, are appended to that bucket's bytearray (no
    object per key; a set of strings took about 134 bytes per key). A lookup scans one bucket,
    a few hundred bytes even at ten million keys, and reads back the key of any entry whose
    hash matches, to compare it: a new event is never taken for a duplicate (which would drop
    its survey). Python's hash of a string is keyed anew in each process (unless
    PYTHONHASHSEED fixes it), so input cannot be made to pile up in one bucket.
    """

    _TAIL = 6
    _ENTRY = _TAIL + 6

    def __init__(self, keys: KeyLog | None = None):
        self._buckets: list[bytearray | None] = [None] * (1 << 16)
        self._keys = keys if keys is not None else KeysInMemory()
        self.count = 0

    def add(self, key: str) -> bool:
        """Remembers ``key``; whether it was new."""
        hashed = _hash(key)
        index = hashed & 0xFFFF
        tail = (hashed >> 16 & 0xFFFF_FFFF_FFFF).to_bytes(self._TAIL, "little")
        bucket = self._buckets[index]
        data = None
        if bucket is not None:
            at = bucket.find(tail)
            while at >= 0:
                if at % self._ENTRY == 0:
                    data = key.encode("utf-8", "surrogatepass") if data is None else data
                    where = int.from_bytes(bucket[at + self._TAIL : at + self._ENTRY], "little")
                    if self._keys.read(where) == data:
                        return False
                at = bucket.find(tail, at + 1)  # across two entries, or another key: look on
        if data is None:
            data = key.encode("utf-8", "surrogatepass")
        entry = tail + self._keys.append(data).to_bytes(6, "little")
        if bucket is None:
            self._buckets[index] = bytearray(entry)
        else:
            bucket += entry
        self.count += 1
        return True


class KeyLog(Protocol):
    """Where ``SeenKeys`` keeps the keys themselves."""

    def append(self, key: bytes) -> int:
        """Keeps ``key``; the place to read it back from."""
        ...

    def read(self, where: int) -> bytes: ...


class KeysInMemory:
    """The keys in one bytearray, each after its length (tests; ``KeysOnDisk`` keeps here
    what it has not written yet)."""

    _LENGTH = 4  # bytes

    def __init__(self):
        self._data = bytearray()
        self._base = 0  # the place of ``_data``'s first byte (what came before is elsewhere)

    def append(self, key: bytes) -> int:
        where = self._base + len(self._data)
        self._data += len(key).to_bytes(self._LENGTH, "little")
        self._data += key
        return where

    def read(self, where: int) -> bytes:
        at = where - self._base
        size = int.from_bytes(self._data[at : at + self._LENGTH], "little")
        return bytes(self._data[at + self._LENGTH : at + self._LENGTH + size])


def event_key(message: dict) -> str:
    """The event's identity, the same in the run's memory and in the ledger: its messageId,
    else a stable hash of its canonical JSON (an empty or null messageId identifies nothing)."""
    key = _message_id_key(message.get("messageId"))
    return key if key is not None else content_key(message)


def legacy_event_key(message: dict) -> str | None:
    """The key versions before 0.2 gave events whose messageId is a float, a boolean, an array
    or an object (they hashed the content), for looking up what those versions recorded."""
    message_id = message.get("messageId")
    if isinstance(message_id, bool) or not isinstance(message_id, str | int):
        if _message_id_key(message_id) is not None:
            try:
                return content_key(message)
            except (orjson.JSONEncodeError, RecursionError):  # too deep to have been recorded
                return None
    return None


def content_key(message: dict) -> str:
    canonical = {k: v for k, v in message.items() if k != "_retently"}
    digest = hashlib.sha256(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f"sha256:{digest}"


def _message_id_key(message_id) -> str | None:
    if isinstance(message_id, str):
        return message_id or None
    if isinstance(message_id, bool):
        return "true" if message_id else "false"
    if isinstance(message_id, int):
        return str(message_id)
    if isinstance(message_id, float):  # 12.0 is the messageId 12, as JSON means it
        return str(int(message_id)) if message_id.is_integer() else repr(message_id)
    if isinstance(message_id, list | dict) and message_id:
        return "json:" + orjson.dumps(message_id, option=orjson.OPT_SORT_KEYS).decode()
    return None


def _is_email(text: str) -> bool:
    """One @, something before it, a dot inside the domain, no space or control character.
    Checked without a backtracking pattern, which took quadratic time on long junk."""
    local, at, domain = text.partition("@")
    return (
        bool(local and at)
        and "@" not in domain
        and "." in domain[1:-1]
        and _NOT_IN_EMAIL.search(text) is None
    )


def is_track(message: dict) -> bool:
    """A Track call: ``type: track``, or an ``event`` with no ``type`` at all."""
    kind = message.get("type")
    return kind == "track" or (kind is None and "event" in message)


def _lookup(event: dict, path: tuple[str, ...]) -> Any:
    value: Any = event
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value
