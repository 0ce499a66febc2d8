"""How well a config covers a log: every Track name seen, what it maps to, what is missing.
Pure: fed one message at a time."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from retently_cli.config import Config
from retently_cli.matching import INVALID_EMAIL, MISSING_EMAIL, Matcher, NearMisses, is_track


@dataclass
class Coverage:
    config: Config
    messages: int = 0
    not_track: int = 0
    names: Counter = field(default_factory=Counter)  # Track event name -> events
    missing_email: Counter = field(default_factory=Counter)  # mapped name -> events
    invalid_email: Counter = field(default_factory=Counter)
    found_at: dict = field(default_factory=dict)  # mapped name -> Counter(path -> events)
    identities: Callable[[dict], object] | None = None  # see Matcher
    from_identify: Counter = field(default_factory=Counter)  # mapped name -> events

    def __post_init__(self):
        self._matcher = Matcher(self.config, self.identities)
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
        if reason == INVALID_EMAIL:
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
        }
