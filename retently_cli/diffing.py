"""What a config change does to real traffic: both configs over the same events. Pure."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from retently_cli.client import survey_body
from retently_cli.config import Config
from retently_cli.matching import Decision, KeysInMemory, Matcher

ADDED = "added"  # surveyed under the new config only
REMOVED = "removed"  # surveyed under the old config only
CHANGED = "changed"  # surveyed under both, with a different request body

EXAMPLES = 3


@dataclass(slots=True)
class Change:
    kind: str
    campaign: str
    event: str
    email: str | None
    message_id: str | None
    old: dict | None  # the request body under the old config
    new: dict | None
    fields: list[str] = field(default_factory=list)  # what changes in the customer sent


@dataclass
class NameChange:
    """What happens to one event name: campaigns it newly triggers, stops triggering."""

    event: str
    added: Counter = field(default_factory=Counter)  # campaign -> events
    removed: Counter = field(default_factory=Counter)
    changed: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)  # (kind, campaign) -> [emails]
    fields: Counter = field(default_factory=Counter)  # "signup_date: string -> date" -> surveys

    @property
    def verdict(self) -> str:
        if self.added and self.removed:
            return "moves"
        if self.added:
            return "newly triggers"
        if self.removed:
            return "stops triggering"
        return "changes what it sends"


class Differ:
    fast_path = True  # off in tests, to compare

    def __init__(self, old: Config, new: Config, identities=None, keys=KeysInMemory):
        """``keys`` makes where each matcher keeps the keys of the events it saw (``Matcher``)."""
        self._old, self._new = Matcher(old, identities, keys()), Matcher(new, identities, keys())
        self.before: Counter = Counter()  # surveys per campaign
        self.after: Counter = Counter()
        self.names: dict[str, NameChange] = {}

    def compare(self, message: dict) -> list[Change]:
        """The (event, campaign) decisions that differ between the two configs."""
        if self.fast_path and self._old.passes_over(message) and self._new.passes_over(message):
            return []  # neither config surveys it, and deciding would change no state
        old = _surveys(self._old.decide(message))
        new = _surveys(self._new.decide(message))
        if not old and not new:
            return []
        self.before.update(old.keys())
        self.after.update(new.keys())
        changes = []
        for campaign in sorted(old.keys() | new.keys()):
            before, after = old.get(campaign), new.get(campaign)
            old_body = survey_body(before) if before else None
            new_body = survey_body(after) if after else None
            if old_body == new_body:
                continue
            kind = ADDED if before is None else REMOVED if after is None else CHANGED
            d = after or before
            assert d is not None and d.event is not None  # surveyed by one config, by name
            fields = (
                field_changes(old_body, new_body)
                if old_body is not None and new_body is not None  # the kind is CHANGED
                else []
            )
            changes.append(
                Change(kind, campaign, d.event, d.email, d.message_id, old_body, new_body, fields)
            )
            self._count(kind, campaign, d.event, d.email, fields)
        return changes

    @property
    def changed(self) -> bool:
        return bool(self.names)

    def _count(
        self, kind: str, campaign: str, event: str, email: str | None, fields: list[str]
    ) -> None:
        entry = self.names.get(event)
        if entry is None:
            entry = self.names[event] = NameChange(event)
        getattr(entry, kind)[campaign] += 1
        entry.fields.update(fields)
        emails = entry.examples.setdefault((kind, campaign), [])
        if len(emails) < EXAMPLES and email not in emails:
            emails.append(email)


def _surveys(decisions: list[Decision]) -> dict[str, Decision]:
    # A decision to survey (no reason) always has its campaign.
    return {d.campaign.id: d for d in decisions if d.reason is None and d.campaign is not None}


_CUSTOMER_FIELDS = ("email", "first_name", "last_name", "company", "tags")


def field_changes(old: dict, new: dict) -> list[str]:
    """What differs between two request bodies for one survey, field by field:
    ``signup_date: string -> date``, ``plan: left out``, ``delay: 3 -> none``."""
    changes = []
    if old.get("delay") != new.get("delay"):
        changes.append(f"delay: {_shown(old.get('delay'))} -> {_shown(new.get('delay'))}")
    before, after = old["subscribers"][0], new["subscribers"][0]
    for name in _CUSTOMER_FIELDS:
        changes.extend(_one_field(name, before.get(name), after.get(name), None, None))
    old_props = {p["label"]: p for p in before.get("properties", ())}
    new_props = {p["label"]: p for p in after.get("properties", ())}
    for label in sorted(old_props.keys() | new_props.keys()):
        was, now = old_props.get(label), new_props.get(label)
        changes.extend(
            _one_field(
                label,
                was and was["value"],
                now and now["value"],
                was and was["type"],
                now and now["type"],
            )
        )
    return changes


def _one_field(name: str, was, now, old_type: str | None, new_type: str | None) -> list[str]:
    if was is None and now is None:
        return []
    if now is None:
        return [f"{name}: left out"]
    if was is None:
        return [f"{name}: now sent" + (f" ({new_type})" if new_type else "")]
    if old_type != new_type:
        return [f"{name}: {old_type} -> {new_type}"]
    return [f"{name}: value changes"] if was != now else []


def _shown(delay) -> str:
    return "none" if delay is None else str(delay)
