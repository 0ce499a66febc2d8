"""Turning a Track event's ``properties`` into a Retently subscriber object. Pure: no I/O.

Standard fields go to ``first_name``, ``last_name``, ``company`` and ``tags``; everything else
becomes a ``{"label", "type", "value"}`` property with its type inferred (or forced by the
config), nested objects flattened with ``_`` and nulls left out.
"""

from __future__ import annotations

import json
import re
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


def build_subscriber(
    email: str,
    properties: dict,
    exclude: frozenset[str] = frozenset(),
    types: dict[str, str] | None = None,
) -> tuple[dict, list[str]]:
    """The subscriber object for one event, and notes on values that could not be typed."""
    types = types or {}
    subscriber: dict = {"email": email}
    custom: list[dict] = []
    notes: list[str] = []
    for key, value in properties.items():
        if value is None or key in _SKIPPED or key in exclude:
            continue
        standard = _STANDARD.get(key)
        if standard is not None and isinstance(value, str) and key not in types:
            if value.strip() and standard not in subscriber:
                subscriber[standard] = value.strip()
            continue
        if isinstance(value, dict):
            for label, leaf in _flatten(key, value):
                if label not in exclude:
                    _add_property(custom, notes, label, leaf, types.get(label))
        else:
            _add_property(custom, notes, key, value, types.get(key))
    if "tags" not in exclude:
        tags = parse_tags(properties.get("tags"))
        if tags:
            subscriber["tags"] = tags
    if custom:
        subscriber["properties"] = custom
    return subscriber, notes


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


def _add_property(custom: list, notes: list, label: str, value, forced: str | None) -> None:
    kind, converted = infer(value)
    if forced is not None and forced != kind:
        coerced = coerce(value, forced)
        if coerced is None:
            article = "an" if forced == "integer" else "a"
            notes.append(f"property {label!r}: {value!r} is not {article} {forced}; sent as {kind}")
        else:
            kind, converted = forced, coerced
    custom.append({"label": label, "type": kind, "value": converted})


def infer(value) -> tuple[str, object]:
    """Retently property type and wire value for a JSON value (not None, not a dict)."""
    if isinstance(value, bool):
        return "boolean", value
    if isinstance(value, int):
        return "integer", value
    if isinstance(value, str):
        date = iso_date(value)
        if date is not None:
            return "date", date
        return "string", value
    if isinstance(value, list):
        if all(isinstance(item, (str, int, float, bool)) for item in value):
            return "collection", ",".join(_scalar_text(item) for item in value)
        return "string", _json_text(value)
    if isinstance(value, float):
        return "string", _scalar_text(value)
    return "string", str(value)


def coerce(value, kind: str):
    """``value`` as a ``kind`` property value, or None when it cannot be one."""
    if kind == "string":
        if isinstance(value, list):
            return _json_text(value)
        return _scalar_text(value)
    if kind == "integer":
        if isinstance(value, float) and value.is_integer():
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
            return iso_date(value) or _us_date(value)
        return None
    if kind == "collection":
        if isinstance(value, list):
            return ",".join(
                _scalar_text(item) for item in value if isinstance(item, (str, int, float, bool))
            )
        if isinstance(value, str):
            return ",".join(part.strip() for part in value.split(",") if part.strip())
        return None
    return None


def iso_date(text: str) -> str | None:
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
    return f"{day_part}T{hour}:{minute}:{second or '00'}{fraction or ''}{zone or 'Z'}"


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
