"""Lenient ISO-8601 parsing, because Segment's own timestamps are not always tidy
(``2015-2-02T00:30:08.276Z``: no zero padding). Pure."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

# Dates and date-times as JavaScript's toISOString and most SDKs write them; one-digit months
# and days are accepted because Segment's own data has them.
ISO_DATE = re.compile(
    r"^(\d{4})-(\d{1,2})-(\d{1,2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$",
    re.ASCII,  # \d alone would take other scripts' digits
)

EVENT_TIME_FIELDS = ("timestamp", "originalTimestamp", "receivedAt")


def parse_time(text: object) -> datetime | None:
    """An aware UTC datetime, or None. No zone means UTC, as Segment writes every time."""
    if not isinstance(text, str):
        return None
    match = ISO_DATE.match(text.strip())
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        when = datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int(float(fraction) * 1_000_000) if fraction else 0,
            tzinfo=UTC,
        )
    except ValueError:
        return None
    if zone and zone != "Z":
        hours, minutes = int(zone[1:3]), int(zone[-2:])
        if hours > 23 or minutes > 59:
            return None
        offset = timedelta(hours=hours, minutes=minutes)
        try:
            when = when - offset if zone[0] == "+" else when + offset
        except OverflowError:  # 9999-12-31T23:00-05:00 is past the last instant Python holds
            return None
    return when


def event_time(message: dict) -> datetime | None:
    """When the event happened: ``timestamp``, else ``originalTimestamp``, else ``receivedAt``."""
    for name in EVENT_TIME_FIELDS:
        when = parse_time(message.get(name))
        if when is not None:
            return when
    return None
