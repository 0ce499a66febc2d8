"""The dead-letter file: each failed or uncertain event, as read, one per line, ready to be fed
back to ``retently send`` after a fix. The ``_retently`` field says what happened; readers
ignore it, so the line is the original event again."""

from __future__ import annotations

import orjson

FIELD = "_retently"


class DeadLetters:
    """``stream``: an ``outputs.Output`` (or any writer). ``count`` says how many lines it
    took; ``lost``, how many came once it had failed (a full disk, a pipe nobody reads)."""

    def __init__(self, stream):
        self._stream = stream
        self.count = 0
        self.lost = 0

    def write(self, message: dict, campaign: str, reason: str, status=None, attempts=0) -> None:
        entry = dict(message)
        entry[FIELD] = {
            "reason": reason,
            "status": status,
            "attempts": attempts,
            "campaign": campaign,
        }
        try:
            line = orjson.dumps(entry, option=orjson.OPT_APPEND_NEWLINE)
        except (orjson.JSONEncodeError, RecursionError):  # nested beyond what JSON writers take
            keep = {k: message.get(k) for k in ("messageId", "type", "event", "timestamp")}
            keep[FIELD] = {**entry[FIELD], "note": "the event was too deeply nested to copy"}
            line = orjson.dumps(keep, option=orjson.OPT_APPEND_NEWLINE)
        self._stream.write(line)
        self._stream.flush()  # a crash later must not lose the lines already written
        if getattr(self._stream, "error", None) is None:
            self.count += 1
        else:
            self.lost += 1

    def close(self) -> None:
        self._stream.close()
