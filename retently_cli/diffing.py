"""What a config change does to real traffic: both configs over the same events. Pure."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from retently_cli.config import Config
from retently_cli.matching import Decision, Matcher, survey_body

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


@dataclass
class NameChange:
    """What happens to one event name: campaigns it newly triggers, stops triggering."""

    event: str
    added: Counter = field(default_factory=Counter)  # campaign -> events
    removed: Counter = field(default_factory=Counter)
    changed: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)  # (kind, campaign) -> [emails]

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

    def __init__(self, old: Config, new: Config):
        self._old, self._new = Matcher(old), Matcher(new)
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
            changes.append(
                Change(kind, campaign, d.event, d.email, d.message_id, old_body, new_body)
            )
            self._count(kind, campaign, d)
        return changes

    @property
    def changed(self) -> bool:
        return bool(self.names)

    def _count(self, kind: str, campaign: str, d: Decision) -> None:
        entry = self.names.get(d.event)
        if entry is None:
            entry = self.names[d.event] = NameChange(d.event)
        getattr(entry, kind)[campaign] += 1
        emails = entry.examples.setdefault((kind, campaign), [])
        if len(emails) < EXAMPLES and d.email not in emails:
            emails.append(d.email)


def _surveys(decisions: list[Decision]) -> dict[str, Decision]:
    return {d.campaign.id: d for d in decisions if d.reason is None}
