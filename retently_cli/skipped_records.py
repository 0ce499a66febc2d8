"""The NDJSON record of an event skipped at first sight (``matching.FirstSight``), as bytes.

Most events of a log are skipped so, and their records differ only in source, line and
messageId: each is written from parts remembered per source and per (event name, reason,
detail), byte for byte the record ``Report.decision`` would build field by field. Worker
processes write them too (``fanout``), so this imports nothing of the report's display.
"""

from __future__ import annotations

import orjson

from retently_cli.vocabulary import Outcome

SKIPPED = Outcome.SKIPPED
_TAILS_KEPT = 10_000  # event names whose record ends are remembered
_NAME_KEPT = 200  # characters: longer names are not remembered, so memory stays small


class SkippedRecords:
    def __init__(self) -> None:
        self._head_source: str | None = None  # a source, and the start of its records
        self._head = b""
        self._tails: dict[tuple, bytes] = {}  # (event, reason, detail) -> its records' end
        self._dumps = orjson.dumps

    def record(
        self,
        source: str,
        line: int,
        message_id: str | None,
        event: str | None,
        reason: str,
        detail: str | None,
    ) -> bytes:
        head = self._head
        if source is not self._head_source:  # sources come one after another
            head = self._head = self._dumps({"source": source})[:-1] + b',"line":'
            self._head_source = source
        tail = self._tails.get((event, reason, detail))
        if tail is None:
            tail = self._tail(event, reason, detail)
        return b"".join((head, b"%d" % line, b',"message_id":', self._dumps(message_id), tail))

    def judged_record(self, source: str, line: int, message_id: str | None, judged) -> bytes:
        """``record`` for an event ``FirstSight.judge`` judged: its end is kept on the
        judgement (a ``first_sight.Judged``), which the first sight remembers."""
        head = self._head
        if source is not self._head_source:
            head = self._head = self._dumps({"source": source})[:-1] + b',"line":'
            self._head_source = source
        tail = judged.tail
        if tail is None:
            tail = judged.tail = self._tail(judged.event, judged.reason, judged.detail)
        return b"".join((head, b"%d" % line, b',"message_id":', self._dumps(message_id), tail))

    def _tail(self, event: str | None, reason: str, detail: str | None) -> bytes:
        rest = {
            "event": event,
            "campaign": None,
            "email": None,
            "email_source": None,
            "outcome": SKIPPED,
            "reason": reason,
            "detail": detail,
        }
        tail = b"," + orjson.dumps(rest, option=orjson.OPT_APPEND_NEWLINE)[1:]
        if len(self._tails) < _TAILS_KEPT and len(event or "") + len(detail or "") <= _NAME_KEPT:
            self._tails[(event, reason, detail)] = tail
        return tail
