"""Which day folders of a Segment export can hold events in a ``--since/--until`` window.

Segment's S3 destination files each message under the UTC day it was *received*
(``segment-logs/<source-id>/<day-epoch-ms>/<file>.gz``), and a message is received after it
happens, give or take the sender's clock. So a folder that ends more than a day (the skew
allowed) before ``since`` cannot hold an event of the window, and neither can one that starts
``max_lateness`` or more after ``until`` (events that arrive later than that are given up).
Only a path component that is a 13-digit epoch-ms at a UTC midnight counts as a day folder;
any other folder is never pruned.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

DAY_MS = 86_400_000
CLOCK_SKEW_MS = DAY_MS
DEFAULT_MAX_LATENESS_DAYS = 7

_DAY_FOLDER = re.compile(r"[0-9]{13}")


@dataclass(frozen=True)
class Window:
    """The events wanted, by their time: at or after ``since``, before ``until`` (either open),
    and how many days after ``until`` an event may still be received."""

    since: datetime | None = None
    until: datetime | None = None
    max_lateness_days: float = DEFAULT_MAX_LATENESS_DAYS

    @property
    def bounded(self) -> bool:
        return self.since is not None or self.until is not None


def day_folder_start(name: str) -> int | None:
    """The epoch-ms a folder named ``name`` starts at, when it is a day folder; else None."""
    if not _DAY_FOLDER.fullmatch(name):
        return None
    start = int(name)
    return start if start % DAY_MS == 0 else None


def prunable(name: str, window: Window | None) -> bool:
    """Whether a folder named ``name`` cannot hold an event of ``window``."""
    if window is None or not window.bounded:
        return False
    start = day_folder_start(name)
    if start is None:
        return False
    if window.since is not None:
        if start + DAY_MS <= _ms(window.since) - CLOCK_SKEW_MS:
            return True
    if window.until is not None:
        lateness = round(window.max_lateness_days * DAY_MS)
        if start >= _ms(window.until) + lateness:
            return True
    return False


def _ms(when: datetime) -> int:
    return round(when.timestamp() * 1000)
