"""Turning a Track event's ``properties`` into a Retently subscriber object. Pure: no I/O.

Standard fields go to ``first_name``, ``last_name``, ``company`` and ``tags``; everything else
becomes a ``{"label", "type", "value"}`` property, nested objects flattened with ``_``, nulls
and empty values left out. Retently keeps one type per account property, so a run gives each
property name one type (``PropertyTypes``): the config's, else the first one seen.
"""

from __future__ import annotations

import functools
import json
import re
from collections import Counter
from datetime import datetime

from retently_cli.timeparse import ISO_DATE

_STANDARD = {
    "firstName": "first_name",
    "first_name": "first_name",
    "lastName": "last_name",
    "last_name": "last_name",
    "companyName": "company",
    "company": "company",
}
_SKIPPED = frozenset({"email", "tags"})

_US_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$", re.ASCII)
_DIGITS = frozenset("0123456789")
_INT64 = range(-(2**63), 2**63)  # what an integer property holds; `in range` is O(1)


class PropertyTypes:
    """The one type each property name gets in a run, and what did not fit it.

    A type forced by the config (``properties.types``) wins; otherwise the first value seen
    for a name in the run fixes its type. A later value is converted to that type where it
    can be, else left out: sending it with another type would invite Retently to refuse or
    mistype it. The run owns one (through its matcher), so a dry-run and a send of the same
    input type every value alike. The counters feed the summary and ``coverage``.
    """

    def __init__(self, forced: dict[str, str] | None = None):
        self.forced = dict(forced or {})
        self.chosen: dict[str, str] = {}  # name -> the type its first value had
        self.sent: Counter = Counter()  # name -> values sent
        self.conflicts: Counter = Counter()  # (name, the value's own type) -> values
        self.left_out: Counter = Counter()  # name -> values that could not take its type
        self.empty: Counter = Counter()  # name -> empty values left out
        self.other_dates: Counter = Counter()  # name -> US-style dates not read as dates

    def type_of(self, label: str) -> str | None:
        return self.forced.get(label) or self.chosen.get(label)


def build_subscriber(
    email: str,
    properties: dict,
    exclude: frozenset[str] = frozenset(),
    types: PropertyTypes | dict[str, str] | None = None,
) -> tuple[dict, list[str]]:
    """The subscriber object for one event, and notes on values left out or converted.

    ``types`` is the run's ``PropertyTypes``; a plain dict of forced types (or None) types
    this event on its own."""
    run = types if isinstance(types, PropertyTypes) else PropertyTypes(types)
    forced, chosen, sent = run.forced, run.chosen, run.sent
    subscriber: dict = {"email": email}
    custom: list[dict] = []
    notes: list[str] = []
    empty: list[str] = []
    for key, value in properties.items():
        if value is None or key in _SKIPPED or key in exclude:
            continue
        if isinstance(value, str):
            if not value.strip():
                empty.append(key)
                continue
            standard = _STANDARD.get(key)
            if standard is not None and key not in forced:
                if standard not in subscriber:
                    subscriber[standard] = value.strip()
                continue
        elif isinstance(value, dict):
            for label, leaf in _flatten(key, value):
                if label in exclude or _added(custom, label, leaf, forced, chosen, sent):
                    continue
                if _is_empty(leaf) or not _add_property(custom, notes, label, leaf, run):
                    empty.append(label)
            continue
        elif isinstance(value, list) and all(_blank(item) for item in value):
            empty.append(key)
            continue
        if _added(custom, key, value, forced, chosen, sent):
            continue
        if not _add_property(custom, notes, key, value, run):
            empty.append(key)
    if "tags" not in exclude:
        tags = parse_tags(properties.get("tags"))
        if tags:
            subscriber["tags"] = tags
    if custom:
        subscriber["properties"] = custom
    if empty:
        run.empty.update(label for label in empty if label not in _STANDARD)
        notes.append(f"left out as empty: {', '.join(empty)}")
    return subscriber, notes


def _is_empty(value) -> bool:
    """Retently reads an empty value as nothing (once as "unassign"): never worth sending.
    A list is empty when it holds nothing but nulls and blanks."""
    if isinstance(value, str):
        return not value.strip()
    return isinstance(value, list) and all(_blank(item) for item in value)


def _blank(item) -> bool:
    return item is None or (isinstance(item, str) and not item.strip())


def parse_tags(value) -> list[str]:
    """Tags from a list or a comma-separated string, trimmed, empty parts dropped, each once
    where first seen (a tag is a label: a repeat says nothing). One pass, so a line with
    millions of tags costs what reading it costs."""
    if isinstance(value, str):
        parts = value.split(",")
    elif isinstance(value, list):
        parts = [
            _scalar_text(item)
            for item in value
            if isinstance(item, (str, int, float)) and not isinstance(item, bool)
        ]
    else:
        return []
    stripped = (str(part).strip() for part in parts)
    return list(dict.fromkeys(text for text in stripped if text))


def _flatten(prefix: str, value: dict):
    for key, leaf in value.items():
        label = f"{prefix}_{key}"
        if isinstance(leaf, dict):
            yield from _flatten(label, leaf)
        elif leaf is not None:
            yield label, leaf


def _added(custom: list, label: str, value, forced: dict, chosen: dict, sent: Counter) -> bool:
    """``_add_property``'s common case, in one call: a plain value (a string that is not
    blank and holds no ``/``, a float, a boolean, an integer that fits) of the type its
    property already has, or is the first to give it, and no type forced. False: not done."""
    kind_of = type(value)
    if kind_of is str:
        if "/" in value or not value.strip():
            return False
        start = value[:1]
        date = iso_date(value) if start in _DIGITS or start.isspace() else None
        inferred, converted = ("string", value) if date is None else ("date", date)
    elif kind_of is float:
        inferred, converted = "string", _scalar_text(value)
    elif kind_of is bool:
        inferred, converted = "boolean", value
    elif kind_of is int and value in _INT64:
        inferred, converted = "integer", value
    else:
        return False
    if label in forced or chosen.setdefault(label, inferred) != inferred:
        return False
    sent[label] += 1
    custom.append({"label": label, "type": inferred, "value": converted})
    return True


def _add_property(custom: list, notes: list, label: str, value, run: PropertyTypes) -> bool:
    """Types and adds one value (or leaves it out, noted); False when it comes out empty."""
    inferred, converted = infer(value)
    kind = run.forced.get(label)
    forced = kind is not None
    if kind is None:
        kind = run.chosen.setdefault(label, inferred)
    if inferred == "string" and isinstance(value, str) and "/" in value:
        if not (forced and kind == "date") and _US_DATE.match(value.strip()):
            run.other_dates[label] += 1  # coverage offers the properties.types line
    if kind != inferred:
        coerced = coerce(value, kind, us_dates=forced)
        if coerced == "":  # " , " as a collection: nothing in it
            return False
        if not forced:
            run.conflicts[label, inferred] += 1
        why = " (properties.types)" if forced else f", the type {label!r} first had in this run"
        if coerced is None:
            run.left_out[label] += 1
            article = "an" if kind == "integer" else "a"
            shown = _short(value)
            notes.append(f"property {label!r}: {shown} is not {article} {kind}{why}; left out")
            return True
        if not forced:
            notes.append(f"property {label!r}: {_short(value)} sent as {kind}{why}")
        converted = coerced
    run.sent[label] += 1
    custom.append({"label": label, "type": kind, "value": converted})
    return True


def _short(value) -> str:
    """A value in a note: a long one would repeat a whole line in the record."""
    text = _json_text(value) if isinstance(value, list) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def infer(value) -> tuple[str, object]:
    """Retently property type and wire value for a JSON value (not None, not a dict)."""
    if isinstance(value, bool):
        return "boolean", value
    if isinstance(value, int):
        return ("integer", value) if value in _INT64 else ("string", str(value))
    if isinstance(value, float):  # 40.0 too: its writer had a decimal in mind, not a count
        return "string", _scalar_text(value)
    if isinstance(value, str):
        start = value[:1]
        # An ISO date starts with an ASCII digit, once stripped: most strings are not one.
        date = iso_date(value) if start in _DIGITS or start.isspace() else None
        if date is not None:
            return "date", date
        return "string", value
    if isinstance(value, list):
        if all(isinstance(item, (str, int, float, bool)) for item in value):
            return "collection", ",".join(_scalar_text(item) for item in value if not _blank(item))
        return "string", _json_text(value)
    return "string", str(value)


def coerce(value, kind: str, us_dates: bool = True):
    """``value`` as a ``kind`` property value, or None when it cannot be one. ``us_dates``
    reads ``MM/DD/YYYY`` as a date: only where the config asks for a date."""
    if kind == "string":
        if isinstance(value, list):
            return _json_text(value)
        return _scalar_text(value)
    if kind == "integer":
        if isinstance(value, float) and value.is_integer() and int(value) in _INT64:
            return int(value)
        if isinstance(value, str) and re.fullmatch(r"[+-]?\d{1,18}", value.strip()):
            return int(value)
        return None
    if kind == "boolean":
        if isinstance(value, (int, float)) and value in (0, 1):
            return bool(value)
        if isinstance(value, str):
            text = value.strip().lower()
            if text in ("true", "yes", "y", "1"):
                return True
            if text in ("false", "no", "n", "0"):
                return False
        return None
    if kind == "date":
        if isinstance(value, str):
            return iso_date(value) or (_us_date(value) if us_dates else None)
        return None
    if kind == "collection":
        if isinstance(value, list):
            return ",".join(
                _scalar_text(item)
                for item in value
                if isinstance(item, (str, int, float, bool)) and not _blank(item)
            )
        if isinstance(value, str):
            return ",".join(part.strip() for part in value.split(",") if part.strip())
        return None
    return None


def iso_date(text: str) -> str | None:
    """``_iso_date``, remembered for short texts: a property such as a signup date takes the
    same few thousand values again and again."""
    if len(text) > _DATE_CACHED_CHARS:
        return _iso_date(text)
    return _cached_iso_date(text)


def _iso_date(text: str) -> str | None:
    """An ISO-8601 date or date-time as Retently reads it without shifting: with a zone.

    A bare date becomes midnight UTC; a date-time without a zone is taken as UTC, as Segment
    writes every timestamp in UTC. Anything else (or an impossible date) gives None.
    """
    match = ISO_DATE.match(text.strip())
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        datetime(
            int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0)
        )
    except ValueError:
        return None
    day_part = f"{year}-{int(month):02d}-{int(day):02d}"
    if hour is None:
        return f"{day_part}T00:00:00Z"
    if zone is not None and zone != "Z":
        if int(zone[1:3]) > 23 or int(zone[-2:]) > 59:
            return None
        zone = f"{zone[:3]}:{zone[-2:]}"  # +0530 -> +05:30: one ISO-8601 format, not two mixed
    fraction = (fraction or "")[:4]  # milliseconds: what Retently's ISO-8601 parsers all read
    return f"{day_part}T{hour}:{minute}:{second or '00'}{fraction}{zone or 'Z'}"


_DATE_CACHED_CHARS = 40  # a date-time with milliseconds and a zone takes 29
_cached_iso_date = functools.lru_cache(maxsize=4096)(_iso_date)


def _us_date(text: str) -> str | None:
    match = _US_DATE.match(text.strip())
    if not match:
        return None
    month, day, year = (int(part) for part in match.groups())
    try:
        datetime(year, month, day)
    except ValueError:
        return None
    return f"{year:04d}-{month:02d}-{day:02d}T00:00:00Z"


def _scalar_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 1e16 else repr(value)
    return str(value)


def _json_text(value) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def type_conflicts(run: PropertyTypes) -> str | None:
    """One line for a run's summary: the values that did not have their property's type."""
    labels = list(dict.fromkeys([label for label, _ in run.conflicts] + list(run.left_out)))
    if not labels:
        return None
    parts, total = [], 0
    for label in labels:
        differing = sum(n for (name, _), n in run.conflicts.items() if name == label)
        left_out = run.left_out[label]
        if label in run.forced:
            differing = left_out  # converting to the config's type is what it asks for
        total += differing
        what = [f"{left_out:,} left out"] if left_out else []
        if differing > left_out:
            what.append(f"{differing - left_out:,} converted")
        forced = ", properties.types" if label in run.forced else ""
        parts.append(f"{label} ({run.type_of(label)}{forced}): {', '.join(what)}")
    return (
        f"properties: {total:,} value{'s' if total != 1 else ''} did not have the type "
        f"their property has in this run; {'; '.join(parts)}. `retently coverage` shows the "
        "properties.types line that fixes each"
    )
