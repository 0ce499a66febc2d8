"""What can be said of an event from its type and name alone: a call of another type, or a
Track call whose name no campaign maps, and the mapped name such a name probably meant.

Free of the config and of run state, so that worker processes (``fanout``) import it
without the rest of the matching engine.
"""

from __future__ import annotations

from enum import Enum
from typing import Final

from retently_cli.vocabulary import Reason

NOT_TRACK = Reason.NOT_TRACK
NO_CAMPAIGN = Reason.NO_CAMPAIGN

_HINT_CACHE_LIMIT = 100_000


class _Unjudged(Enum):
    NAME = "a name not judged yet"


_UNJUDGED: Final = _Unjudged.NAME
_HINT_NAME_KEPT = 200  # characters: a longer name is judged again, not kept


def message_id_of(event: dict) -> str | None:
    """The messageId as records show it: a string, or the text of another JSON value."""
    message_id = event.get("messageId")
    if message_id is not None and not isinstance(message_id, str):
        return str(message_id)
    return message_id


def near_miss(hint: str | None) -> str | None:
    """The detail of a ``no_campaign`` skip."""
    return f"did you mean {hint!r}?" if hint else None


class FirstSight:
    """What can be said of an event from its type and name alone, knowing only which names
    are mapped: the judgement ``Matcher.decide`` makes first, without a ``Decision``. It holds
    no run state, so worker processes judge with it as the matcher would (``fanout``)."""

    def __init__(self, mapped_names):
        self._mapped = frozenset(mapped_names)
        self.near = NearMisses(mapped_names)

    def skipped(self, event: dict) -> tuple | None:
        """(messageId, event name, reason, detail, hint) for an event that ``decide`` skips at
        first sight: a Track call whose name no campaign maps (``no_campaign``) or a call of
        another type (``not_track``); None for any other event (``decide`` then says).

        The hot path of a run: most events of a log are such calls, and this spares them a
        ``Decision`` and a record built field by field (``Report.skipped``)."""
        kind = event.get("type")
        name = event.get("event")
        if kind == "track":
            if type(name) is not str or not name or name in self._mapped:
                return None
            hint = self.near.hint(name)
            return message_id_of(event), name, NO_CAMPAIGN, near_miss(hint), hint
        if type(kind) is str:
            label = name if type(name) is str else None
            return message_id_of(event), label, NOT_TRACK, f"{kind} call", None
        return None

    def passes_over(self, event: dict) -> bool:
        """Whether ``skipped`` answers for the event (``decide`` surveys nothing), without
        the detail: for callers that only need to know, as ``diff`` does."""
        kind = event.get("type")
        if kind == "track":
            name = event.get("event")
            return type(name) is str and bool(name) and name not in self._mapped
        return type(kind) is str


class NearMisses:
    """Suggests the mapped event name an unmatched one was probably meant to be.

    A near miss differs only by case, surrounding or repeated whitespace, or a small edit
    distance. Each distinct name is judged once and remembered.
    """

    def __init__(self, mapped_names):
        self._exact: dict[str, str] = {}  # normal form -> the first mapped name with it
        # name length -> (name, normal form, its characters, edits allowed), in config order
        self._by_length: dict[int, list[tuple[str, str, frozenset, int]]] = {}
        for name in mapped_names:
            normal = _normalise(name)
            self._exact.setdefault(normal, name)
            limit = _edit_limit(normal)
            for length in range(len(normal) - limit, len(normal) + limit + 1):
                self._by_length.setdefault(length, []).append(
                    (name, normal, frozenset(normal), limit)
                )
        self._cache: dict[str, str | None] = {}

    def hint(self, name: str) -> str | None:
        found = self._cache.get(name, _UNJUDGED)
        if found is not _UNJUDGED:
            return found
        found = self._closest(name)
        if len(self._cache) < _HINT_CACHE_LIMIT and len(name) <= _HINT_NAME_KEPT:
            self._cache[name] = found
        return found

    def _closest(self, name: str) -> str | None:
        normal = _normalise(name)
        exact = self._exact.get(normal)
        if exact is not None:
            return exact
        best, best_distance = None, None
        chars = frozenset(normal)
        for mapped, mapped_normal, mapped_chars, limit in self._by_length.get(len(normal), ()):
            # Each edit changes the set of characters by at most two: a cheap test first.
            if len(chars ^ mapped_chars) > 2 * limit:
                continue
            distance = bounded_levenshtein(normal, mapped_normal, limit)
            if distance is not None and (best_distance is None or distance < best_distance):
                best, best_distance = mapped, distance
        return best


def _edit_limit(normal: str) -> int:
    """Two edits only on long names: "Signed In" is not a typo of "Signed Up"."""
    return 2 if len(normal) >= 12 else 1 if len(normal) >= 4 else 0


def _normalise(name: str) -> str:
    return " ".join(name.split()).casefold()


def bounded_levenshtein(a: str, b: str, limit: int) -> int | None:
    """Edit distance between ``a`` and ``b`` if it is at most ``limit``, else None."""
    if abs(len(a) - len(b)) > limit:
        return None
    if a == b:
        return 0
    if limit == 0:
        return None
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        row_min = i
        for j, char_b in enumerate(b, 1):
            cost = previous[j - 1] + (char_a != char_b)
            value = min(previous[j] + 1, current[j - 1] + 1, cost)
            current.append(value)
            row_min = min(row_min, value)
        if row_min > limit:
            return None
        previous = current
    return previous[-1] if previous[-1] <= limit else None
