"""Reading Segment messages from files, folders and stdin, whatever their format.

The format is told from the bytes, never the name: gzip by its magic bytes (an export that
arrived already decompressed keeps its ``.gz`` name), then NDJSON, one JSON object (possibly
pretty-printed), several concatenated objects, a JSON array, or a Tracking API batch. NDJSON and
gzip are streamed in chunks, so memory does not grow with the input. A bad line is reported as a
``BadInput`` with its line number and reading goes on.
"""

from __future__ import annotations

import json
import os
import queue
import re
import threading
import zlib
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

CHUNK = 1 << 20
_PREFETCH = 8
_IDLE_TICK = 0.2
GZIP_MAGIC = b"\x1f\x8b"
STDIN_NAME = "-"

INVALID_JSON = "invalid_json"
INVALID_UTF8 = "invalid_utf8"
NOT_AN_OBJECT = "not_an_object"
UNREADABLE = "unreadable"
CORRUPT_GZIP = "corrupt_gzip"
TOO_DEEP = "too_deeply_nested"

# Documents (read whole, with the stdlib parser) nested deeper are refused: no Segment message
# comes near this, and deeper ones could not be written back out (orjson stops at 255 levels).
# NDJSON lines are not walked for this, which would cost every event; the engine guards the
# few places that walk or serialise a matched event.
MAX_DEPTH = 64

_BOM = b"\xef\xbb\xbf"
_BATCH_ARRAY = re.compile(r'"batch"\s*:\s*\[')
_WHITESPACE = re.compile(r"\s*")
_ORJSON_POSITION = re.compile(r": line \d+ column (\d+) \(char \d+\)$")


@dataclass(slots=True)
class BadInput:
    """A line (or document) that yields no message."""

    reason: str
    message: str


@dataclass
class Source:
    """One input: a file, or stdin. ``open`` gives a binary stream."""

    name: str
    open: Callable[[], object]
    size: int | None = None


@dataclass
class ReadStats:
    lines: int = 0
    blank_lines: int = 0
    sources: int = 0
    bytes_read: int = 0  # as stored (compressed), for progress against the files' sizes
    per_source: dict[str, int] = field(default_factory=dict)


def expand_paths(paths: Iterable[str], stdin) -> list[Source]:
    """Sources for the given paths; folders are walked recursively in a stable order.

    Hidden files and folders (a leading dot) inside a walked folder are passed over.
    """
    sources: list[Source] = []
    for raw in paths or [STDIN_NAME]:
        if raw == STDIN_NAME:
            sources.append(Source(STDIN_NAME, lambda: _unlocked(stdin)))
            continue
        path = Path(raw)
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if not name.startswith("."):
                        sources.append(_file_source(Path(root) / name))
        else:
            sources.append(_file_source(path))
    return sources


class _FdReader:
    """Reads a file descriptor directly: a reader thread blocked here holds no lock that the
    interpreter needs at exit (a blocked ``sys.stdin.buffer.read`` does, and aborts the exit)."""

    def __init__(self, fd: int):
        self.fd = fd

    def read1(self, size: int) -> bytes:
        return os.read(self.fd, size)


def _unlocked(stream):
    try:
        return _FdReader(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return stream  # an in-memory stream (tests)


def _file_source(path: Path) -> Source:
    try:
        size = path.stat().st_size
    except OSError:
        size = None
    return Source(str(path), lambda: open(path, "rb"), size)


def iter_messages(
    sources: list[Source],
    stats: ReadStats,
    before_wait: Callable[[], None] = lambda: None,
    on_source: Callable[[Source], None] = lambda source: None,
) -> Iterator[tuple[str, int, dict | BadInput]]:
    """(source name, line, message or BadInput) across every source, in order."""
    for source in sources:
        on_source(source)
        for line, item in read_source(source, stats, before_wait):
            yield source.name, line, item


def read_source(
    source: Source, stats: ReadStats, before_wait: Callable[[], None] = lambda: None
) -> Iterator[tuple[int, dict | BadInput]]:
    """(line number, message or BadInput) for every message and every bad line of a source.

    ``before_wait`` is called before each read that may block, so that whoever consumes the
    messages can flush what it has written: records then come out as lines go in.
    """
    stats.sources += 1
    start_lines = stats.lines
    try:
        stream = source.open()
    except OSError as exc:
        yield 0, BadInput(UNREADABLE, f"cannot open: {exc.strerror or exc}")
        return
    try:
        chunks = _prefetched(_decompressed(_chunks(stream, stats)), before_wait)
        yield from _read_lines(_lines(chunks), stats)
    except _ReadFailure as failure:
        yield stats.lines - start_lines + 1, BadInput(failure.reason, failure.message)
    finally:
        stats.per_source[source.name] = stats.lines - start_lines
        if source.name != STDIN_NAME:
            stream.close()


class _ReadFailure(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


def _chunks(stream, stats: ReadStats) -> Iterator[bytes]:
    read = getattr(stream, "read1", None) or stream.read
    while True:
        try:
            chunk = read(CHUNK)
        except OSError as exc:
            raise _ReadFailure(UNREADABLE, f"read failed: {exc.strerror or exc}") from None
        if not chunk:
            return
        stats.bytes_read += len(chunk)
        yield chunk


def _prefetched(chunks: Iterator[bytes], before_wait: Callable[[], None]) -> Iterator[bytes]:
    """The chunks, read and decompressed in a thread so that this work overlaps parsing.

    zlib and file reads release the GIL, so on two cores the reading is nearly free. At most
    ``_PREFETCH`` chunks wait in the queue, which bounds memory. ``before_wait`` runs whenever the
    consumer would otherwise block for the next chunk, and again while the wait lasts.
    """
    box: queue.Queue = queue.Queue(_PREFETCH)
    stop = threading.Event()

    def produce():
        try:
            for chunk in chunks:
                while not stop.is_set():
                    try:
                        box.put((chunk, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            box.put((None, None))
        except BaseException as exc:  # handed to the consumer, which raises it
            box.put((None, exc))

    thread = threading.Thread(target=produce, name="retently-reader", daemon=True)
    thread.start()
    try:
        while True:
            try:
                chunk, failure = box.get_nowait()
            except queue.Empty:
                chunk, failure = _wait(box, before_wait)
            if failure is not None:
                raise failure
            if chunk is None:
                return
            yield chunk
    finally:
        stop.set()


def _wait(box: queue.Queue, before_wait: Callable[[], None]):
    """The next item, calling ``before_wait`` first and again every ``_IDLE_TICK`` s of waiting."""
    while True:
        before_wait()
        try:
            return box.get(timeout=_IDLE_TICK)
        except queue.Empty:
            continue


def _decompressed(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The chunks as they are, or gunzipped (every member) when they start with gzip's magic."""
    first = b""
    for chunk in chunks:
        first += chunk
        if len(first) >= 2:
            break
    if not first.startswith(GZIP_MAGIC):
        if first:
            yield first
        yield from chunks
        return
    inflater = zlib.decompressobj(wbits=31)
    in_member = False
    pending = first
    while True:
        while pending:
            in_member = True
            try:
                data = inflater.decompress(pending, CHUNK)
            except zlib.error as exc:
                raise _ReadFailure(CORRUPT_GZIP, f"corrupt gzip data: {exc}") from None
            if data:
                yield data
            if inflater.eof:
                pending = inflater.unused_data
                inflater, in_member = zlib.decompressobj(wbits=31), False
                if pending and not GZIP_MAGIC.startswith(pending[:2]):
                    raise _ReadFailure(CORRUPT_GZIP, "data after the end of the gzip stream")
            else:
                pending = inflater.unconsumed_tail
        pending = next(chunks, None)
        if pending is None:
            break
    if in_member:
        raise _ReadFailure(CORRUPT_GZIP, "gzip stream ends early (a truncated download?)")


def _lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Raw lines (without the newline); the last one even without a final newline."""
    pending = b""
    for chunk in chunks:
        if pending:
            chunk = pending + chunk
        parts = chunk.split(b"\n")
        pending = parts.pop()
        yield from parts
    if pending:
        yield pending


def _read_lines(lines: Iterator[bytes], stats: ReadStats) -> Iterator[tuple[int, dict | BadInput]]:
    number = 0
    head: list[bytes] = []  # raw lines from the first non-blank one, read to tell the format

    def next_nonblank() -> bytes | None:
        nonlocal number
        for line in lines:
            number += 1
            stats.lines += 1
            if number == 1 and line.startswith(_BOM):
                line = line[len(_BOM) :]
            stripped = line.strip()
            if head or stripped:
                head.append(line)
            if stripped:
                return stripped
            stats.blank_lines += 1
        return None

    first = next_nonblank()
    if first is None:
        return
    first_number = number
    if first[:1] == b"{" and not _parses(first):
        second = next_nonblank()
        if second is not None and second[:1] != b"{":
            yield from _read_document(head, lines, first_number, stats)
            return
    elif first[:1] == b"[":
        yield from _read_document(head, lines, first_number, stats)
        return
    for offset, line in enumerate(head):
        if line.strip():
            yield from _parse_line(first_number + offset, line)
    yield from _read_ndjson(lines, number, stats)


def _parses(line: bytes) -> bool:
    try:
        orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    return True


def _read_ndjson(lines: Iterator[bytes], number: int, stats: ReadStats):
    loads = orjson.loads
    decode_error = orjson.JSONDecodeError
    for line in lines:
        number += 1
        try:
            message = loads(line)
        except decode_error as exc:
            if not line.strip():
                stats.lines += 1
                stats.blank_lines += 1
                continue
            message = _bad_line(line, exc)
        stats.lines += 1
        if type(message) is dict:
            if "batch" in message:
                for item in _batch_items(message):
                    yield number, item
                continue
            yield number, message
        elif type(message) is BadInput:
            yield number, message
        else:
            yield number, BadInput(NOT_AN_OBJECT, f"a JSON {_json_kind(message)}, not an object")


def _parse_line(number: int, line: bytes) -> Iterator[tuple[int, dict | BadInput]]:
    try:
        message = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        yield number, _bad_line(line, exc)
        return
    if isinstance(message, dict):
        if "batch" in message:
            for item in _batch_items(message):
                yield number, item
        else:
            yield number, message
    else:
        yield number, BadInput(NOT_AN_OBJECT, f"a JSON {_json_kind(message)}, not an object")


def _bad_line(line: bytes, exc: Exception) -> BadInput:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as bad:
        return BadInput(INVALID_UTF8, f"invalid UTF-8 at byte {bad.start + 1}")
    text = str(exc)
    match = _ORJSON_POSITION.search(text)
    if match:
        text = f"{text[: match.start()]} at column {match.group(1)}"
    if len(line) > 60:
        shown = line[:60].decode("utf-8", "replace") + "…"
    else:
        shown = line.decode("utf-8", "replace")
    return BadInput(INVALID_JSON, f"not valid JSON ({text}): {shown}")


def _batch_items(batch: dict) -> list[dict | BadInput]:
    """A Tracking API batch's messages, with its top-level context and integrations merged in."""
    items = batch.get("batch")
    if not isinstance(items, list):
        return [batch]
    shared = {
        key: batch[key] for key in ("context", "integrations") if isinstance(batch.get(key), dict)
    }
    result: list[dict | BadInput] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            result.append(
                BadInput(NOT_AN_OBJECT, f"batch item {index} is a JSON {_json_kind(item)}")
            )
            continue
        for key, value in shared.items():
            own = item.get(key)
            item[key] = _merge(value, own) if isinstance(own, dict) else value
        result.append(item)
    return result


def _merge(base: dict, own: dict) -> dict:
    """``own`` over ``base``, recursively: the message's own values win."""
    merged = dict(base)
    for key, value in own.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _json_kind(value) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"


def _read_document(head: list[bytes], lines, number: int, stats: ReadStats):
    """A pretty-printed JSON document: one or more objects, or an array, read whole.

    Such inputs are small (a copy from Segment's debugger, a webhook body). Each message gets the
    line on which it starts.
    """
    parts = list(head)
    for line in lines:
        stats.lines += 1
        parts.append(line)
    raw = b"\n".join(parts)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        line = number + raw.count(b"\n", 0, bad.start)
        yield (
            line,
            BadInput(INVALID_UTF8, f"invalid UTF-8 at byte {bad.start + 1}; document skipped"),
        )
        return
    newlines = [m.start() for m in re.finditer("\n", text)]

    def line_of(pos: int) -> int:
        return number + bisect_left(newlines, pos)

    decoder = _DECODER
    pos = _WHITESPACE.match(text, 0).end()
    while pos < len(text):
        try:
            if text[pos] == "[":
                items, end = _array_items(decoder, text, pos + 1)
                for item_pos, item in items:
                    yield line_of(item_pos), _as_message(item)
            else:
                value, end = decoder.raw_decode(text, pos)
                if isinstance(value, dict) and isinstance(value.get("batch"), list):
                    for item_pos, item in _batch_positions(decoder, text, pos, end, value):
                        yield line_of(item_pos), item
                else:
                    yield line_of(pos), _as_message(value)
            pos = end
        except RecursionError:
            yield (
                line_of(pos),
                BadInput(TOO_DEEP, "nested too deeply; rest of the document skipped"),
            )
            return
        except ValueError as exc:  # JSONDecodeError, or a constant refused above
            if not isinstance(exc, json.JSONDecodeError):
                exc = json.JSONDecodeError(str(exc), text, pos)
            last = number + len(newlines)
            yield (
                line_of(exc.pos),
                BadInput(
                    INVALID_JSON,
                    f"not valid JSON ({exc.msg} at column {exc.colno}); "
                    f"rest of the document (to line {last}) skipped",
                ),
            )
            return
        pos = _WHITESPACE.match(text, pos).end()


def _int_as_orjson_does(text: str) -> int | float:
    value = int(text)
    return value if -(2**63) <= value < 2**64 else float(value)


def _no_constants(name: str):
    raise ValueError(f"{name} is not JSON")


# Parses documents as orjson parses lines: no NaN or Infinity, huge integers become floats.
_DECODER = json.JSONDecoder(parse_int=_int_as_orjson_does, parse_constant=_no_constants)


def _array_items(decoder: json.JSONDecoder, text: str, pos: int):
    """([(position, value)], end) for the array whose '[' is just before ``pos``."""
    items = []
    pos = _WHITESPACE.match(text, pos).end()
    if text[pos : pos + 1] == "]":
        return items, pos + 1
    while True:
        value, end = decoder.raw_decode(text, pos)
        items.append((pos, value))
        pos = _WHITESPACE.match(text, end).end()
        char = text[pos : pos + 1]
        if char == "]":
            return items, pos + 1
        if char != ",":
            raise json.JSONDecodeError("Expecting ',' or ']'", text, pos)
        pos = _WHITESPACE.match(text, pos + 1).end()


def _batch_positions(decoder, text: str, start: int, end: int, value: dict):
    match = _BATCH_ARRAY.search(text, start, end)
    positions = [p for p, _ in _array_items(decoder, text, match.end())[0]] if match else []
    items = _batch_items(value)
    for index, item in enumerate(items):
        yield (positions[index] if index < len(positions) else start), item


def _as_message(value) -> dict | BadInput:
    if _too_deep(value):
        return BadInput(TOO_DEEP, f"nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, dict):
        return value
    return BadInput(NOT_AN_OBJECT, f"a JSON {_json_kind(value)}, not an object")


def _too_deep(value) -> bool:
    """Nested more than MAX_DEPTH levels of objects and arrays (checked without recursion)."""
    stack = [(value, 1)]
    while stack:
        current, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        if isinstance(current, dict):
            stack.extend((child, depth + 1) for child in current.values())
        elif isinstance(current, list):
            stack.extend((child, depth + 1) for child in current)
    return False
