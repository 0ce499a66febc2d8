"""Which surveyable decisions this run really surveys: the backfill filters, the ledger,
the per-customer guard and the limit. Each refusal is a reported outcome, never a silent drop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Final

from retently_cli.ledger import PENDING, SENT, UNCERTAIN, Ledger, event_key
from retently_cli.matching import Decision, legacy_event_key
from retently_cli.timeparse import event_time
from retently_cli.vocabulary import Outcome, Reason

# Outcomes and reasons the planner gives (see the README).
SKIPPED = Outcome.SKIPPED
UNCERTAIN_OUTCOME = Outcome.UNCERTAIN
FILTERED = Reason.FILTERED
ALREADY_SENT = Reason.ALREADY_SENT
EARLIER_RUN = Reason.EARLIER_RUN
ONCE_PER_EMAIL = Reason.ONCE_PER_EMAIL
LIMIT = Reason.LIMIT

_DAY = 86_400.0


class _Unknown(Enum):
    TIME = "an event time not parsed yet"


_UNKNOWN: Final = _Unknown.TIME


@dataclass
class Filters:
    since: datetime | None = None
    until: datetime | None = None
    events: frozenset[str] = frozenset()
    campaigns: frozenset[str] = frozenset()
    limit: int | None = None


@dataclass(slots=True)
class Verdict:
    outcome: str
    reason: str
    detail: str


@dataclass
class Planner:
    filters: Filters = field(default_factory=Filters)
    ledger: Ledger | None = None
    retry_uncertain: bool = False
    clock: Callable[[], float] = time.time
    planned: int = 0  # surveys let through, for --limit
    _recent: dict = field(default_factory=dict)  # (campaign, email) -> event times this run
    _message: dict | None = None
    _key: str | None = None
    _when: float | None | _Unknown = None

    def identity(self, message: dict) -> tuple[str, float | None]:
        """The message's ledger key and event time (epoch seconds)."""
        return self.key_of(message), self.time_of(message)

    def key_of(self, message: dict) -> str:
        self._remember(message)
        if self._key is None:
            self._key = event_key(message)
        return self._key

    def time_of(self, message: dict) -> float | None:
        """Parsed only when a filter, a window or a delivery needs it, once per message."""
        self._remember(message)
        if self._when is _UNKNOWN:
            when = event_time(message)
            self._when = when.timestamp() if when is not None else None
        return self._when

    def _remember(self, message: dict) -> None:
        if message is not self._message:
            self._message, self._key, self._when = message, None, _UNKNOWN

    def check(self, message: dict, d: Decision) -> Verdict | None:
        """None when the decision is to be surveyed; otherwise why not."""
        self._remember(message)
        if self._key is None:
            self._key = d.key  # the matcher's, so event_key runs once per event
        campaign, email = d.campaign, d.email
        assert campaign is not None and email is not None  # a surveyable decision has both
        f = self.filters
        if f.events and d.event not in f.events:
            return Verdict(SKIPPED, FILTERED, "--event does not name this event")
        if f.campaigns and campaign.id not in f.campaigns:
            return Verdict(SKIPPED, FILTERED, "--campaign does not name this campaign")
        if f.since is not None or f.until is not None:
            when = self.time_of(message)
            if when is None:
                return Verdict(SKIPPED, FILTERED, "no readable timestamp for --since/--until")
            if f.since is not None and when < f.since.timestamp():
                return Verdict(SKIPPED, FILTERED, "before --since")
            if f.until is not None and when >= f.until.timestamp():
                return Verdict(SKIPPED, FILTERED, "not before --until")
        if self.ledger is not None:
            state = self.ledger.state(self.key_of(message), campaign.id)
            if state is None:
                legacy = legacy_event_key(message)
                if legacy is not None:
                    state = self.ledger.state(legacy, campaign.id)
            if state == SENT:
                return Verdict(SKIPPED, ALREADY_SENT, "the ledger has it delivered")
            if state in (PENDING, UNCERTAIN) and not self.retry_uncertain:
                return Verdict(
                    UNCERTAIN_OUTCOME,
                    EARLIER_RUN,
                    "an earlier run sent it but never learned the result; "
                    "--retry-uncertain sends it again",
                )
        window = campaign.once_per_email
        if window:
            when = self.time_of(message)
            verdict = self._once_per_email(campaign.id, email, self.key_of(message), when, window)
            if verdict is not None:
                return verdict
        if f.limit is not None and self.planned >= f.limit:
            return Verdict(SKIPPED, LIMIT, f"--limit {f.limit} reached")
        self.planned += 1
        if window:
            self._recent.setdefault((campaign.id, email.lower()), []).append(
                when if when is not None else self.clock()
            )
        return None

    def _once_per_email(
        self, campaign: str, email: str, key: str, when: float | None, days: int
    ) -> Verdict | None:
        at = when if when is not None else self.clock()
        earlier = list(self._recent.get((campaign, email.lower()), ()))
        if self.ledger is not None:
            earlier += self.ledger.event_times(campaign, email, but=key)
        if any(t is not None and abs(at - t) < days * _DAY for t in earlier):
            return Verdict(
                SKIPPED,
                ONCE_PER_EMAIL,
                f"this email had a survey in this campaign within {days} days",
            )
        return None
