"""How well a config covers a log: every Track name seen, what it maps to, what is missing.
Pure: fed one message at a time."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from retently_cli.config import Config
from retently_cli.matching import (
    INVALID_EMAIL,
    MISSING_EMAIL,
    KeyLog,
    KeysInMemory,
    Matcher,
    NearMisses,
    is_track,
)
from retently_cli.subscriber import PropertyTypes

if TYPE_CHECKING:
    from retently_cli.identities import Identity


@dataclass
class Coverage:
    config: Config
    messages: int = 0
    not_track: int = 0
    names: Counter = field(default_factory=Counter)  # Track event name -> events
    missing_email: Counter = field(default_factory=Counter)  # mapped name -> events
    invalid_email: Counter = field(default_factory=Counter)
    found_at: dict = field(default_factory=dict)  # mapped name -> Counter(path -> events)
    identities: Callable[[dict], Identity | None] | None = None  # see Matcher
    keys: Callable[[], KeyLog] = KeysInMemory  # makes where the Matcher keeps event keys
    from_identify: Counter = field(default_factory=Counter)  # mapped name -> events

    def __post_init__(self):
        self._matcher = Matcher(self.config, self.identities, self.keys())
        self._mapped = self.config.campaigns_by_event()
        self._near = NearMisses(self._mapped)

    def add(self, message: dict) -> None:
        self.messages += 1
        name = message.get("event")
        if not is_track(message) or not isinstance(name, str) or not name:
            self.not_track += 1
            return
        self.names[name] += 1
        if name not in self._mapped:
            return
        _, reason, _, _, identity = self._matcher.locate_email(message)
        if identity is not None:
            self.from_identify[name] += 1
        if reason is None:
            self._matcher.decide(message)  # types its properties as a send would
        elif reason == INVALID_EMAIL:
            self.invalid_email[name] += 1
        elif reason == MISSING_EMAIL:
            self.missing_email[name] += 1
            path = self._matcher.email_elsewhere(message)
            if path is not None:
                self.found_at.setdefault(name, Counter())[path] += 1

    def summary(self) -> dict:
        """Everything, as plain data (the ``--output json`` document), sorted by count."""
        rows = []
        for name, count in sorted(self.names.items(), key=lambda item: (-item[1], item[0])):
            campaigns = [c.id for c in self._mapped.get(name, ())]
            rows.append(
                {
                    "event": name,
                    "count": count,
                    "campaigns": campaigns,
                    "near_miss_of": None if campaigns else self._near.hint(name),
                    "missing_email": self.missing_email[name],
                    "invalid_email": self.invalid_email[name],
                    "email_found_at": dict(self.found_at.get(name, {})),
                    "email_from_identify": self.from_identify[name],
                }
            )
        return {
            "messages": self.messages,
            "track_events": sum(self.names.values()),
            "not_track": self.not_track,
            "email_paths": list(self.config.email_paths),
            "events": rows,
            "mapped_never_seen": sorted(n for n in self._mapped if n not in self.names),
            "properties": property_rows(self._matcher.property_types),
        }


def property_rows(run: PropertyTypes) -> list[dict]:
    """Every property name the surveys would carry, by count: the type it gets, values of
    other types, values left out, and the ``properties.types`` line that would fix it."""
    conflicts: dict[str, dict[str, int]] = {}
    for (name, kind), count in run.conflicts.items():
        conflicts.setdefault(name, {})[kind] = count
    names = set(run.sent) | set(run.left_out) | set(run.empty) | set(run.other_dates)
    rows = []
    for name in names:
        kind = run.type_of(name)
        row = {
            "name": name,
            "count": run.sent[name],
            "type": kind,
            "forced": name in run.forced,
            "conflicts": dict(sorted(conflicts.get(name, {}).items(), key=lambda kv: -kv[1])),
            "left_out": run.left_out[name],
            "empty": run.empty[name],
            "other_date_format": run.other_dates[name],
        }
        row["fix"] = _fix(row)
        rows.append(row)
    return sorted(rows, key=lambda row: (-row["count"], row["name"]))


def _fix(row: dict) -> str | None:
    """The config line that gives this property one type that fits its values."""
    if row["forced"]:
        return None
    if row["other_date_format"] and row["type"] != "date":
        fitting = "date"
    elif not row["conflicts"]:
        return None
    else:  # a string takes every value; else pin the type the first value gave, for every run
        fitting = "string" if row["left_out"] else row["type"]
    return f"properties.types: {{{_yaml_key(row['name'])}: {fitting}}}"


def _yaml_key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) else json.dumps(name)
