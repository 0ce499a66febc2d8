"""Text from data made safe for a terminal: control characters shown as escapes, never sent.

Event names, emails, campaign ids, file names and server messages are data: a raw ESC in one
could retitle the window, clear the screen or move the cursor, and a bidi override (U+202E) could
make one name look like another. Every human-readable output passes data through ``visible``;
the NDJSON output does not need it (JSON escapes C0, and it is read by programs).
"""

from __future__ import annotations

import re

# C0 and DEL, C1, and the bidirectional and other invisible format controls that reorder or hide
# text: ALM, LRM/RLM, LRE..RLO, LRI..PDI.
CONTROL_CLASS = "\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
CONTROL = re.compile(f"[{CONTROL_CLASS}]")

_ESCAPES = {
    code: repr(chr(code))[1:-1]  # the escape Python itself shows: \x1b, \n, \u202e
    for code in [*range(0x20), *range(0x7F, 0xA0), 0x61C, 0x200E, 0x200F,
                 *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
}  # fmt: skip


def visible(text: str) -> str:
    """``text`` with every control character replaced by its escape (``\\x1b``, ``\\u202e``)."""
    if CONTROL.search(text) is None:
        return text
    return text.translate(_ESCAPES)


def has_control(text: str) -> bool:
    return CONTROL.search(text) is not None
