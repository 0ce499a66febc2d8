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

_HINT_CACHE_LIMIT = 20_000
_JUDGED_KEPT = 10_000  # (type, name) pairs whose judgement is remembered


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


class Judged:
    """What ``FirstSight`` says of the events of one type and name: the ``skipped`` fields
    but the messageId. ``tail`` is their records' end, once ``SkippedRecords`` wrote one."""

    __slots__ = ("event", "reason", "detail", "hint", "tail")

    def __init__(self, event: str | None, reason: str, detail: str | None, hint: str | None):
        self.event, self.reason, self.detail, self.hint = event, reason, detail, hint
        self.tail: bytes | None = None


class FirstSight:
    """What can be said of an event from its type and name alone, knowing only which names
    are mapped: the judgement ``Matcher.decide`` makes first, without a ``Decision``. It holds
    no run state, so worker processes judge with it as the matcher would (``fanout``)."""

    def __init__(self, mapped_names):
        self._mapped = frozenset(mapped_names)
        self.near = NearMisses(mapped_names)
        self._judged: dict[tuple, Judged | None] = {}

    def skipped(self, event: dict) -> tuple | None:
        """(messageId, event name, reason, detail, hint) for an event that ``decide`` skips at
        first sight: a Track call whose name no campaign maps (``no_campaign``) or a call of
        another type (``not_track``); None for any other event (``decide`` then says).

        The hot path of a run: most events of a log are such calls, and this spares them a
        ``Decision`` and a record built field by field (``Report.skipped``)."""
        judged = self.judge(event.get("type"), event.get("event"))
        if judged is None:
            return None
        return message_id_of(event), judged.event, judged.reason, judged.detail, judged.hint

    def judge(self, kind, name) -> Judged | None:
        """``skipped``'s answer for an event of type ``kind`` named ``name``, but its messageId.
        The same few pairs make up most of a log: each is judged once and remembered (up to
        ``_JUDGED_KEPT``), its record's end with it (see ``SkippedRecords``)."""
        try:
            return self._judged[kind, name]
        except KeyError:
            pass
        except TypeError:  # a type or name that is an array or an object
            return self._judge(kind, name)
        judged = self._judge(kind, name)
        if (
            len(self._judged) < _JUDGED_KEPT
            and (type(kind) is not str or len(kind) <= _HINT_NAME_KEPT)
            and (type(name) is not str or len(name) <= _HINT_NAME_KEPT)
        ):
            self._judged[kind, name] = judged
        return judged

    def _judge(self, kind, name) -> Judged | None:
        if kind == "track":
            if type(name) is not str or not name or name in self._mapped:
                return None
            hint = self.near.hint(name)
            return Judged(name, NO_CAMPAIGN, near_miss(hint), hint)
        if type(kind) is str:
            return Judged(name if type(name) is str else None, NOT_TRACK, f"{kind} call", None)
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
