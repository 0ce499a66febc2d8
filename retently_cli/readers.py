"""Reading Segment messages from files, folders and stdin, whatever their format.

The format is told from the bytes, never the name: gzip by its magic bytes (an export that
arrived already decompressed keeps its ``.gz`` name), then NDJSON, one JSON object (possibly
pretty-printed), several concatenated objects, a JSON array, or a Tracking API batch. NDJSON and
gzip are streamed in chunks, so memory does not grow with the input. A bad line is reported as a
``BadInput`` with its line number and reading goes on.
"""

from __future__ import annotations

import codecs

try:
    import fcntl
except ImportError:  # Windows
    pass
import json
import os
import queue
import re
import select
import threading
import zlib
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import orjson

CHUNK = 1 << 20
_PREFETCH = 8
_IDLE_TICK = 0.2
# A smaller file is read in the main thread: starting a thread and handing each chunk over
# cost more than the overlap gains (10,000 small files took four times as long as gzip -dc).
_READ_IN_THREAD_ABOVE = CHUNK
GZIP_MAGIC = b"\x1f\x8b"
STDIN_NAME = "-"

INVALID_JSON = "invalid_json"
INVALID_UTF8 = "invalid_utf8"
NOT_AN_OBJECT = "not_an_object"
UNREADABLE = "unreadable"
CORRUPT_GZIP = "corrupt_gzip"
TOO_DEEP = "too_deeply_nested"
LINE_TOO_LONG = "line_too_long"
EMPTY_BATCH = "empty_batch"
INVALID_UTF16 = "invalid_utf16"

# Longer lines are reported and skipped as they are read, so that memory stays bounded.
MAX_LINE_BYTES = 16 << 20

# Documents (read whole, with the stdlib parser) nested deeper are refused: no Segment message
# comes near this, and deeper ones could not be written back out (orjson stops at 255 levels).
# NDJSON lines are not walked for this, which would cost every event; the engine guards the
# few places that walk or serialise a matched event.
MAX_DEPTH = 64

_BOM = b"\xef\xbb\xbf"
_BATCH_ARRAY = re.compile(r'"batch"\s*:\s*\[')
_WHITESPACE = re.compile(r"[ \t\n\r]*")  # JSON's whitespace, not Unicode's
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
    max_line_bytes: int = MAX_LINE_BYTES
    # Set for a file found by a folder walk: a file that does not start like JSON is then
    # skipped, and this is called with the warning. A file named on its own is read line by line.
    skip_unless_json: Callable[[str], None] | None = None


@dataclass
class ReadStats:
    lines: int = 0
    blank_lines: int = 0
    sources: int = 0
    bytes_read: int = 0  # as stored (compressed), for progress against the files' sizes
    pruned_folders: int = 0  # day folders of an export left unopened by --since/--until
    per_source: dict[str, int] = field(default_factory=dict)
    skipped_files: int = 0  # walked files that do not start like JSON


def expand_paths(
    paths: Iterable[str],
    stdin,
    warn: Callable[[str], None] = lambda text: None,
    max_line_bytes: int = MAX_LINE_BYTES,
):
    """Kept for callers of this module: listing inputs is ``sources.expand_paths``."""
    from retently_cli.sources import expand_paths

    return expand_paths(paths, stdin, warn, max_line_bytes)


class _FdReader:
    """Reads a file descriptor directly: a reader thread blocked here holds no lock that the
    interpreter needs at exit (a blocked ``sys.stdin.buffer.read`` does, and aborts the exit)."""

    def __init__(self, fd: int):
        self.fd = fd
        _widen_pipe(fd)

    def read1(self, size: int) -> bytes:
        """Up to ``size`` bytes: waits for some, then takes whatever else is ready at once. A
        pipe hands over 64 KiB a read, and each small chunk costs a handover between threads;
        a slow writer's lines still come through as they are written."""
        data = os.read(self.fd, size)
        if not data or len(data) >= size:
            return data
        parts, held = [data], len(data)
        while held < size and _ready(self.fd):
            more = os.read(self.fd, size - held)
            if not more:  # the end: the next read says so again
                break
            parts.append(more)
            held += len(more)
        return b"".join(parts)


def _ready(fd: int) -> bool:
    try:
        return bool(select.select([fd], [], [], 0)[0])
    except (OSError, ValueError):  # not selectable (Windows pipes)
        return False


def _widen_pipe(fd: int) -> None:
    """Let a pipe hold a whole chunk (Linux), so the writer runs ahead while we parse."""
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, CHUNK)
    except (OSError, NameError, AttributeError):  # not a pipe, not Linux, over the limit
        pass


def _unlocked(stream):
    try:
        return _FdReader(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return stream  # an in-memory stream (tests)


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
        chunks = _decompressed(_chunks(stream, stats))
        if source.size is None or source.size > _READ_IN_THREAD_ABOVE:
            chunks = _prefetched(chunks, before_wait)
        chunks = _Pushback(_lf(_as_utf8(chunks)))
        start = _start(chunks)
        if source.skip_unless_json and start not in (b"", b"{", b"["):
            stats.skipped_files += 1
            stats.sources -= 1
            source.skip_unless_json(f"{source.name}: skipped, does not start like JSON")
            return
        limit = source.max_line_bytes
        first = 1
        if start == b"[" and _longer_than(chunks, limit):
            first = yield from _ArrayStream(chunks, stats, limit).records()
        lines = _lines(chunks, limit)
        yield from _LineReader(lines, stats, limit, first).records()
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


def _lf(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The chunks with every line ending (``\\r\\n`` or a lone ``\\r``) made ``\\n``."""
    after_cr = False
    for chunk in chunks:
        if after_cr and chunk[:1] == b"\n":
            chunk = chunk[1:]
        after_cr = False
        if b"\r" in chunk:
            after_cr = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if chunk:
            yield chunk


def _as_utf8(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The chunks as they are, or transcoded from UTF-16 when they start with its BOM (what a
    PowerShell redirect writes). Line breaks stay where they were, so line numbers hold."""
    first = b""
    for chunk in chunks:
        first += chunk
        if len(first) >= 2:
            break
    if first[:2] not in (b"\xff\xfe", b"\xfe\xff"):
        if first:
            yield first
        yield from chunks
        return
    decoder = codecs.getincrementaldecoder("utf-16")()
    offset = 0
    try:
        for chunk in _chained(first, chunks):
            yield decoder.decode(chunk).encode()
            offset += len(chunk)
        yield decoder.decode(b"", final=True).encode()
    except UnicodeDecodeError as bad:
        where = offset + max(bad.start, 0) + 1
        raise _ReadFailure(INVALID_UTF16, f"invalid UTF-16 near byte {where:,}") from None


def _chained(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


class _Pushback:
    """Chunks, with bytes read ahead put back in front of them."""

    def __init__(self, chunks: Iterator[bytes]):
        self.chunks, self.front = chunks, []

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        if self.front:
            return self.front.pop()
        return next(self.chunks)

    def push(self, *data: bytes) -> None:
        """Put ``data`` back, to be read next in this order."""
        self.front.extend(part for part in reversed(data) if part)


_LEAD = re.compile(rb"(?:[ \t\n]|\xef\xbb\xbf)*")


def _start(chunks: _Pushback) -> bytes:
    """The first byte that is not whitespace or a BOM (b"" when there is none within the first
    MiB); nothing is consumed."""
    held = b""
    for chunk in chunks:
        held += chunk
        if _LEAD.match(held).end() + 3 <= len(held) or len(held) > CHUNK:
            break
    chunks.push(held)
    end = _LEAD.match(held).end()
    return held[end : end + 1]


def _longer_than(chunks: _Pushback, limit: int) -> bool:
    """Whether more than ``limit`` bytes are left; nothing is consumed."""
    held, size = [], 0
    for chunk in chunks:
        held.append(chunk)
        size += len(chunk)
        if size > limit:
            break
    chunks.push(*held)
    return size > limit


class _Broken(Exception):
    """The array cannot be read on: one record, and what follows goes to the line reader."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


# Where an object item may end: '}' then ',' and the next item (not a key), or the array's ']'.
_ITEM_END = re.compile(rb'\}[ \t\n]*(?:,[ \t\n]*[^ \t\n"]|\])')
_SPACE = re.compile(rb"[ \t\n]*")
_LINE_REST = re.compile(rb"[ \t]*\n?")
_SCALAR = re.compile(rb'"(?:[^"\\]|\\.)*"|[^,\]\s]+')
_FAST_TRIES = 8


class _ArrayStream:
    """The items of a JSON array longer than the line limit, streamed: each item's extent is
    found in the bytes and only the item is parsed, so memory holds one item, not the array.

    An object item is cut at a '}' that may end it and kept when that slice parses (it then ends
    exactly there); after a few misses (objects in arrays inside it) its brackets are counted.
    Each item is limited to ``limit`` bytes. When the array breaks (a missing ',', a truncated
    file), one record says so and what follows is read by the line reader from that point.
    """

    def __init__(self, chunks: _Pushback, stats: ReadStats, limit: int):
        self.chunks, self.stats, self.limit = chunks, stats, limit
        self.buf, self.pos, self.line, self.last = b"", 0, 1, b""

    def records(self):
        """(line, message or BadInput) per item; returns the line at which reading goes on."""
        self._skip(_LEAD)
        opened = self.line
        self._advance(self.pos + 1)  # '['
        try:
            if self._skip(_SPACE) == b"]":
                self._advance(self.pos + 1)
                yield opened, BadInput(EMPTY_BATCH, "an empty array: no messages")
                return self._end_line()
            while True:
                line = self.line
                item, end = self._item()
                self._advance(end)
                yield line, item
                char = self._skip(_SPACE)
                if char == b"]":
                    self._advance(self.pos + 1)
                    return self._end_line()
                if char != b",":
                    shown = repr(char.decode("utf-8", "replace")) if char else "the end"
                    raise _Broken(INVALID_JSON, f"expected ',' or ']' in the array, not {shown}")
                self._advance(self.pos + 1)
                self._skip(_SPACE)
        except _Broken as broken:
            message = f"not valid JSON ({broken.message}; the array opened on line {opened})"
            yield self.line, BadInput(broken.reason, message)
            if broken.reason == LINE_TOO_LONG:
                self._drop_line()
            return self._hand_over()

    def _item(self) -> tuple[dict | BadInput, int]:
        end = self._object_end() if self.buf[self.pos : self.pos + 1] == b"{" else None
        if end is None:
            end = self._counted_end()
        try:
            value = orjson.loads(memoryview(self.buf)[self.pos : end])
        except orjson.JSONDecodeError as exc:
            return _bad_line(self.buf[self.pos : end], exc), end
        return (value if type(value) is dict else _not_an_object(value)), end

    def _object_end(self) -> int | None:
        """Where the object at ``pos`` ends, found by parsing slices; None after a few misses."""
        search, tries = self.pos, 0
        while tries < _FAST_TRIES:
            found = _ITEM_END.search(self.buf, search)
            if found is None or found.start() - self.pos >= self.limit:
                if found is None and len(self.buf) - self.pos <= self.limit:
                    search -= self._more()
                    continue
                raise self._too_long()
            end = found.start() + 1
            try:
                orjson.loads(memoryview(self.buf)[self.pos : end])
                return end
            except orjson.JSONDecodeError:
                tries, search = tries + 1, end
        return None

    def _counted_end(self) -> int:
        """Where the item at ``pos`` ends, by counting brackets outside strings."""
        if self.buf[self.pos : self.pos + 1] not in (b"{", b"["):
            while True:
                found = _SCALAR.match(self.buf, self.pos)
                if found is None:
                    raise _Broken(INVALID_JSON, "an array item expected")
                if found.end() < len(self.buf) or not self._more(required=False):
                    return found.end()
        stack, at = bytearray(), self.pos
        while True:
            for match in _TOKEN.finditer(self.buf, at):
                char = self.buf[match.start()]
                if char == 0x22:  # '"'
                    if match.group(1) is None:
                        break  # the string goes on in the next chunk
                elif char in _CLOSES:
                    if not stack or stack.pop() != _CLOSES[char]:
                        raise _Broken(INVALID_JSON, "a bracket closed that was not open")
                    if not stack:
                        return match.end()
                else:
                    stack.append(char)
                at = match.end()
            if len(self.buf) - self.pos > self.limit:
                raise self._too_long()
            at -= self._more()

    def _too_long(self) -> _Broken:
        text = f"an item longer than {self.limit:,} bytes (--max-line-bytes); rest of line skipped"
        return _Broken(LINE_TOO_LONG, text)

    def _more(self, required: bool = True) -> int:
        """Read the next chunk, dropping what is read; returns how far positions moved back."""
        chunk = next(self.chunks, None)
        if chunk is None:
            if not required:
                return 0
            raise _Broken(INVALID_JSON, "the input ends inside the array (a truncated file?)")
        shift = self.pos
        self.last = self.buf[self.pos - 1 : self.pos] or self.last
        self.buf, self.pos = self.buf[self.pos :] + chunk, 0
        return shift

    def _advance(self, to: int) -> None:
        newlines = self.buf.count(b"\n", self.pos, to)
        self.line += newlines
        self.stats.lines += newlines
        self.pos = to

    def _skip(self, pattern: re.Pattern) -> bytes:
        """Skip what ``pattern`` matches; the next byte, b"" at the end of the input."""
        while True:
            self._advance(pattern.match(self.buf, self.pos).end())
            if self.pos < len(self.buf):
                return self.buf[self.pos : self.pos + 1]
            if not self._more(required=False):
                return b""

    def _end_line(self) -> int:
        """After the array: the rest of its line (blanks, a line break) is its own."""
        self._advance(_LINE_REST.match(self.buf, self.pos).end())
        return self._hand_over()

    def _drop_line(self) -> None:
        while (cut := self.buf.find(b"\n", self.pos)) < 0:
            self.pos = len(self.buf)
            if not self._more(required=False):
                return
        self._advance(cut + 1)

    def _hand_over(self) -> int:
        """Put back what is left; returns the line at which it starts."""
        rest = self.buf[self.pos :]
        last = self.buf[self.pos - 1 : self.pos] or self.last
        if not rest and last not in (b"", b"\n") and self._at_end():
            self.stats.lines += 1  # the last line, which has no line break
        self.chunks.push(rest)
        return self.line

    def _at_end(self) -> bool:
        chunk = next(self.chunks, None)
        if chunk is None:
            return True
        self.chunks.push(chunk)
        return False


def _lines(chunks: Iterator[bytes], limit: int) -> Iterator[bytes]:
    """Raw lines (``\\n``-ended, see ``_lf``) without their ending; the last one even without one.

    A line longer than ``limit`` bytes is given as ``TOO_LONG`` as soon as it is known to be, and
    the rest of it is dropped as it is read: memory stays bounded whatever the input (an endless
    line, as from /dev/zero, gives one ``TOO_LONG`` and then nothing, in flat memory).
    """
    head: list[bytes] = []  # the start of a line that spans chunks
    held = 0
    skipping = False  # inside a line already given as TOO_LONG
    for chunk in chunks:
        parts = chunk.split(b"\n")
        tail = parts.pop()
        if parts:
            if skipping:
                del parts[0]
                skipping = False
            elif head:
                held += len(parts[0])
                parts[0] = b"".join([*head, parts[0]]) if held <= limit else TOO_LONG
                head = []
            if len(chunk) > limit:  # only then can a line inside the chunk be too long
                parts = [part if len(part) <= limit else TOO_LONG for part in parts]
            yield from parts
            held = 0
        if tail and not skipping:
            head.append(tail)
            held += len(tail)
            if held > limit:
                yield TOO_LONG
                head, skipping = [], True
    if head:
        yield b"".join(head)


class _LineReader:
    """Messages and bad inputs from lines, reading JSON values as a stream whatever separates them.

    Each line is first parsed alone (NDJSON, the hot path). A line that fails and opens a bracket it
    does not close may start a value over several lines (pretty-printed, or a record split in two):
    the lines are followed while its brackets stay open, up to ``limit`` bytes. The candidate is
    cut back to its first line, and the lines it took are read one by one, when it cannot be one
    value: a string open at the first line's end, a bracket closed that was not open, a line
    starting with ``{`` or ``[`` where the value cannot take one (the next NDJSON record), the
    limit, or the end of the input. So a bad line costs that line only, and no line is read twice
    by a candidate, which keeps time linear.
    """

    def __init__(self, lines: Iterator[bytes], stats: ReadStats, limit: int, first: int = 1):
        self.lines, self.stats, self.limit, self.first = lines, stats, limit, first

    def records(self) -> Iterator[tuple[int, dict | BadInput]]:
        loads = orjson.loads
        decode_error = orjson.JSONDecodeError
        stats = self.stats
        number = self.first - 1
        for line in self.lines:
            number += 1
            stats.lines += 1
            try:
                message = loads(line)
            except decode_error:
                number = yield from self._unparsed(line, number)
                continue
            if type(message) is dict and "batch" not in message:
                yield number, message
            else:
                for item in _messages(message):
                    yield number, item

    def _unparsed(self, line: bytes, number: int):
        """Records for a line that is not one JSON value, and for the lines its value takes;
        returns the number of the last line read."""
        while True:
            line = _without_bom(line)
            stack = bytearray()
            starts = line.lstrip()[:1] in (b"{", b"[")
            if not starts or _brackets(line, stack) != _BALANCED or not stack:
                yield from self._alone(line, number)
                return number
            region, stop = self._candidate(line, stack)
            if stop is None and not stack:
                records = _document(region, number)
                if records is not None:
                    yield from records
                    return number + len(region) - 1
            for extra in region:
                yield from self._alone(extra, number)
                number += 1
            if stop is None or stop is _END:
                return number - 1
            try:
                message = orjson.loads(stop)
            except orjson.JSONDecodeError:
                line = stop
                continue
            for item in _messages(message):
                yield number, item
            return number

    def _candidate(self, first: bytes, stack: bytearray) -> tuple[list[bytes], bytes | None]:
        """The lines of a value that starts on ``first`` and leaves ``stack`` open, and the line
        that stopped it (read, not taken), ``_END``, or None when the value is whole."""
        region = [first]
        size = len(first)
        last = first.rstrip()[-1:]
        for line in self.lines:
            self.stats.lines += 1
            size += len(line) + 1
            if line == TOO_LONG or size > self.limit:
                return region, line
            if line[:1] in (b"{", b"[") and not _value_may_follow(last, stack):
                return region, line
            region.append(line)
            # a string left open is a fault that parsing will report; the value may go on
            if _brackets(line, stack) == _MISMATCH:
                return region, _END
            if not stack:
                return region, None
            last = line.rstrip()[-1:] or last
        return region, _END

    def _alone(self, line: bytes, number: int) -> Iterator[tuple[int, dict | BadInput]]:
        """Records for one line read on its own: blank, too long, one value, several in a row, or
        bad."""
        if line == TOO_LONG:
            text = f"line longer than {self.limit:,} bytes (--max-line-bytes); skipped"
            yield number, BadInput(LINE_TOO_LONG, text)
            return
        line = _without_bom(line)
        if not line.strip():
            self.stats.blank_lines += 1
            return
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            stack = bytearray()
            if _brackets(line, stack) == _BALANCED and not stack:
                yield from _document([line], number)
            else:
                yield number, _bad_line(line, exc)
            return
        for item in _messages(message):
            yield number, item


# No real line holds a newline, so these can mark what is not a line.
TOO_LONG = b"\n"
_END = b"\n\n"

# A string (group 1 is its closing quote, absent when the line ends inside it) or a bracket.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(")?|[][{}]', re.S)
_CLOSES = {ord("}"): ord("{"), ord("]"): ord("[")}


def _brackets(line: bytes, stack: bytearray) -> int:
    """Push the brackets the line opens onto ``stack`` and pop those it closes. ``_OPEN_STRING``
    when a string is still open at the line's end (JSON strings never span lines), ``_MISMATCH``
    when a bracket is closed that was not open, else ``_BALANCED``."""
    for match in _TOKEN.finditer(line):
        char = line[match.start()]
        if char == 0x22:  # '"'
            if match.group(1) is None:
                return _OPEN_STRING
        elif char in _CLOSES:
            if not stack or stack.pop() != _CLOSES[char]:
                return _MISMATCH
        else:
            stack.append(char)
    return _BALANCED


_BALANCED, _OPEN_STRING, _MISMATCH = range(3)


def _value_may_follow(last: bytes, stack: bytearray) -> bool:
    """Whether a value may come after ``last``, the last byte before a line break."""
    return last in (b"[", b":") or (last == b"," and stack[-1] == ord("["))


def _without_bom(line: bytes) -> bytes:
    """The line without the BOMs at its start (``cat`` of files that each begin with one, even
    an empty one, puts them at the start of any line)."""
    while line.startswith(_BOM):
        line = line[len(_BOM) :]
    return line


def _messages(value) -> list[dict | BadInput]:
    """The messages in a JSON value: an object, a batch's items, or an array's."""
    if type(value) is dict:
        return _batch_items(value) if "batch" in value else [value]
    if type(value) is list:
        if not value:
            return [BadInput(EMPTY_BATCH, "an empty array: no messages")]
        return [
            item if type(item) is dict else _not_an_object(item, f"array item {index} is")
            for index, item in enumerate(value)
        ]
    return [_not_an_object(value)]


def _not_an_object(value, what: str = "") -> BadInput:
    if what:
        return BadInput(NOT_AN_OBJECT, f"{what} a JSON {_json_kind(value)}")
    return BadInput(NOT_AN_OBJECT, f"a JSON {_json_kind(value)}, not an object")


def _bad_line(line: bytes, exc: Exception) -> BadInput:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as bad:
        return BadInput(INVALID_UTF8, f"invalid UTF-8 at byte {bad.start + 1}")
    text = str(exc)
    match = _ORJSON_POSITION.search(text)
    if match:
        text = f"{text[: match.start()]} at column {match.group(1)}"
    return BadInput(INVALID_JSON, f"not valid JSON ({text}): {_shown(line)}")


def _shown(line: bytes) -> str:
    if len(line) > 60:
        return line[:60].decode("utf-8", "replace") + "…"
    return line.decode("utf-8", "replace")


def _batch_items(batch: dict) -> list[dict | BadInput]:
    """A Tracking API batch's messages, with its top-level context and integrations merged in."""
    items = batch.get("batch")
    if not isinstance(items, list):
        return [batch]
    if not items:
        return [BadInput(EMPTY_BATCH, "a batch with no messages")]
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


def _document(region: list[bytes], number: int) -> list[tuple[int, dict | BadInput]] | None:
    """Records for lines whose brackets all close: one or more values, perhaps pretty-printed.

    Each message gets the line on which it starts (an array's or a batch's items their own). A
    value that fails to parse is one record at its first line, naming the fault's line, unless
    one of its later lines starts with a bracket, which pretty-printers never write: then it is
    None, to be read line by line, so that such a line (an NDJSON record, say) is never hidden in
    a broken value.
    """
    raw = b"\n".join(region)
    last = number + len(region) - 1
    records: list[tuple[int, dict | BadInput]] = []
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        message = f"invalid UTF-8 at byte {bad.start + 1}"
        if last > number:
            line = number + raw.count(b"\n", 0, bad.start)
            message = f"invalid UTF-8 on line {line}; lines {number} to {last} skipped"
        return _unless_hiding(region, [(number, BadInput(INVALID_UTF8, message))])
    newlines = [m.start() for m in re.finditer("\n", text)]

    def line_of(pos: int) -> int:
        return number + bisect_left(newlines, pos)

    decoder = _DECODER
    pos = _WHITESPACE.match(text, 0).end()
    while pos < len(text):
        try:
            if text[pos] == "[":
                items, end = _array_items(decoder, text, pos + 1)
                if not items:
                    records.append((line_of(pos), BadInput(EMPTY_BATCH, "an empty array")))
                for item_pos, item in items:
                    records.append((line_of(item_pos), _as_message(item)))
            else:
                value, end = decoder.raw_decode(text, pos)
                if isinstance(value, dict) and isinstance(value.get("batch"), list):
                    for item_pos, item in _batch_positions(decoder, text, pos, end, value):
                        records.append((line_of(item_pos), item))
                else:
                    records.append((line_of(pos), _as_message(value)))
            pos = end
        except RecursionError:
            bad = BadInput(TOO_DEEP, f"nested too deeply; lines to {last} skipped")
            records.append((line_of(pos), bad))
            return records
        except ValueError as exc:  # JSONDecodeError, or a constant refused above
            if not isinstance(exc, json.JSONDecodeError):
                exc = json.JSONDecodeError(str(exc), text, pos)
            start = line_of(pos)
            if last > number:
                where = f"line {line_of(exc.pos)} column {exc.colno}"
                message = f"not valid JSON ({exc.msg} at {where}); lines {start} to {last} skipped"
            else:
                message = f"not valid JSON ({exc.msg} at column {exc.colno}): {_shown(region[0])}"
            records.append((start, BadInput(INVALID_JSON, message)))
            return _unless_hiding(region, records)
        pos = _WHITESPACE.match(text, pos).end()
    return records


def _unless_hiding(region: list[bytes], records: list) -> list | None:
    if any(line[:1] in (b"{", b"[") for line in region[1:]):
        return None
    return records


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
        try:  # the stdlib parser lets through what no JSON writer takes: lone surrogates
            orjson.dumps(value)
        except orjson.JSONEncodeError as exc:
            return BadInput(INVALID_JSON, f"not valid JSON ({exc})")
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
