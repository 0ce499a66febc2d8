"""Reading Segment messages from files, folders and stdin, whatever their format.

The format is told from the bytes, never the name: gzip by its magic bytes (an export that
arrived already decompressed keeps its ``.gz`` name), then NDJSON, one JSON object (possibly
pretty-printed), several concatenated objects, a JSON array, or a Tracking API batch. NDJSON and
gzip are streamed in chunks, so memory does not grow with the input. A bad line is reported as a
``BadInput`` with its line number and reading goes on.
"""

from __future__ import annotations

import codecs
from array import array

try:
    import fcntl
except ImportError:  # Windows
    pass
import json
import math
import os
import queue
import re
import select
import stat
import struct
import sys
import tempfile
import threading
from bisect import bisect_left
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from itertools import accumulate, repeat
from typing import Any, AnyStr, Final, Literal, Protocol, cast, final, overload

import orjson
from isal import isal_zlib

from retently_cli.vocabulary import Reason

CHUNK = 1 << 20
_PREFETCH = 8
# A wait for input calls its before_wait at least this often (seconds): a signal is acted on
# there, and a quiet pipe's partial batches are sent.
IDLE_TICK = 0.2
# A smaller file is read in the main thread: starting a thread and handing each chunk over
# cost more than the overlap gains (10,000 small files took four times as long as gzip -dc).
_READ_IN_THREAD_ABOVE = CHUNK
GZIP_MAGIC = b"\x1f\x8b"
STDIN_NAME = "-"

INVALID_JSON = Reason.INVALID_JSON
INVALID_UTF8 = Reason.INVALID_UTF8
NOT_AN_OBJECT = Reason.NOT_AN_OBJECT
UNREADABLE = Reason.UNREADABLE
CORRUPT_GZIP = Reason.CORRUPT_GZIP
TOO_DEEP = Reason.TOO_DEEPLY_NESTED
LINE_TOO_LONG = Reason.LINE_TOO_LONG
EMPTY_BATCH = Reason.EMPTY_BATCH
INVALID_UTF16 = Reason.INVALID_UTF16

# Longer lines are reported and skipped as they are read, so that memory stays bounded.
MAX_LINE_BYTES = 16 << 20

# Documents (read whole, with the stdlib parser) nested deeper are refused: no Segment message
# comes near this, and deeper ones could not be written back out (orjson stops at 255 levels).
# NDJSON lines are not walked for this, which would cost every event; the engine guards the
# few places that walk or serialise a matched event.
MAX_DEPTH = 64


class _Matches(Protocol[AnyStr]):
    """A pattern that matches the empty string: its ``match`` finds a (maybe empty) match."""

    def match(self, string: AnyStr, pos: int = 0) -> re.Match[AnyStr]: ...


def _always(pattern: re.Pattern[AnyStr]) -> _Matches[AnyStr]:
    """``pattern`` as it is, typed as never failing to match (each of its parts may be
    empty), so that ``match(...).end()`` needs no test for None."""
    return cast(_Matches[AnyStr], pattern)


_BOM = b"\xef\xbb\xbf"
_BATCH_ARRAY = re.compile(r'"batch"\s*:\s*\[')
_WHITESPACE = _always(re.compile(r"[ \t\n\r]*"))  # JSON's whitespace, not Unicode's
_ORJSON_POSITION = re.compile(r": line \d+ column (\d+) \(char \d+\)$")


@final
@dataclass(slots=True)
class BadInput:
    """A line (or document) that yields no message."""

    reason: str
    message: str


@dataclass
class Source:
    """One input: a file, or stdin. ``open`` gives a binary stream."""

    name: str
    # A file, an fsspec object or stdin's reader: read with read1 (else read), closed if not stdin.
    open: Callable[[], Any]
    size: int | None = None
    max_line_bytes: int = MAX_LINE_BYTES
    # Set for a file found by a folder walk: a file that does not start like JSON is then
    # skipped, and this is called with the warning. A file named on its own is read line by line.
    skip_unless_json: Callable[[str], None] | None = None
    path: str | None = None  # a local file's: one a worker process can open too (fanout)


# (line, message or BadInput) per message; returns the line at which reading goes on.
_Records = Generator[tuple[int, dict | BadInput], None, int]


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
            try:
                more = os.read(self.fd, size - held)
            except OSError:  # what was read goes first: the next read meets the failure
                break
            if not more:  # the end: the next read says so again
                break
            parts.append(more)
            held += len(more)
        return b"".join(parts)


class _PipeReader(_FdReader):
    """A pipe or FIFO opened by its path: read as stdin is (no lock held while a read waits),
    and closed by whoever reads it."""

    def __init__(self, file):
        super().__init__(file.fileno())
        self._file = file

    def close(self) -> None:
        self._file.close()


def open_pipe(path) -> _PipeReader:
    return _PipeReader(open(path, "rb", buffering=0))


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
    sources: Iterable[Source],
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
    try:
        stream = source.open()
    except OSError as exc:
        yield 0, BadInput(UNREADABLE, f"cannot open: {exc.strerror or exc}")
        return
    yield from read_on(source, stream, stats, stats.lines, (), 1, before_wait)


def read_on(
    source: Source,
    stream,
    stats: ReadStats,
    start_lines: int,
    held: Iterable[bytes],
    first: int,
    before_wait: Callable[[], None] = lambda: None,
) -> Iterator[tuple[int, dict | BadInput]]:
    """``read_source`` for a source opened as ``stream``, whose ``held`` bytes were read from it
    already (and counted in ``stats``; ``start_lines``: its lines before the source's first).
    ``first`` 1: ``held`` is where the stream starts. Else it starts at line ``first``, every
    line before it already read alone (see ``read_lines_alone``): the reading goes on from
    there as one reading of the whole source would."""
    try:
        chunks: Iterator[bytes] = _chunks(stream, stats)
        if held:
            chunks = _after(held, chunks)
        if first == 1:
            chunks = _decompressed(chunks)
        if source.size is None or source.size > _READ_IN_THREAD_ABOVE:
            chunks = _prefetched(chunks, before_wait)
        if first != 1:
            yield from _values(_Pushback(_lf(chunks)), stats, source.max_line_bytes, first, None)
            return
        chunks = _Pushback(_lf(_as_utf8(chunks)))
        start = _start(chunks)
        if source.skip_unless_json and start not in (b"", b"{", b"["):
            stats.skipped_files += 1
            stats.sources -= 1
            source.skip_unless_json(f"{source.name}: skipped, does not start like JSON")
            return
        limit = source.max_line_bytes
        reread = _rereader(source, stream)
        if start == b"[" and _longer_than(chunks, limit):
            first = yield from _ValueStream(chunks, stats, limit, 1, reread).records(_LEAD)
        yield from _values(chunks, stats, limit, first, reread)
    except _ReadFailure as failure:
        stats.lines += 1  # the line it breaks, so that the summary's lines hold every record
        yield stats.lines - start_lines, BadInput(failure.reason, failure.message)
    finally:
        stats.per_source[source.name] = stats.lines - start_lines
        # Not at the interpreter's exit (a run that stopped part way leaves this to the
        # collector): the reading thread, stopped there inside a read, holds the file's lock,
        # and closing would abort the exit. The process's end closes the file all the same.
        if source.name != STDIN_NAME and not sys.is_finalizing():
            stream.close()


def _values(chunks: _Pushback, stats: ReadStats, limit: int, first: int, reread) -> _Records:
    """Lines, and the values too long for a line that come between them, from line ``first``."""
    while True:
        reader = _LineReader(chunks, stats, limit, first)
        first = yield from reader.records()
        if not reader.handed_over:
            return first
        first = yield from _ValueStream(chunks, stats, limit, first, reread).records()


def starts_plainly(data: bytes) -> bool | None:
    """Whether a stream that starts with ``data`` may be read as lines from its first byte on,
    each alone: not gzip, not UTF-16, not a JSON array (after blank lines, whatever ends them,
    and BOMs: as ``read_on`` finds the start). None: ``data`` is too short to tell (under two
    bytes, nothing but such a lead, or a lead and the start of a BOM)."""
    if data[:2] in (GZIP_MAGIC, b"\xff\xfe", b"\xfe\xff"):
        return False
    end = _RAW_LEAD.match(data).end()
    if len(data) < 2 or end == len(data) or _BOM.startswith(data[end:]):
        return None
    return data[end : end + 1] != b"["


class NotAlone(Exception):
    """Line ``line`` may not be read alone: it is too long, or may open a value that later
    lines close. ``read_on`` from there reads it as a reading of the whole source would."""

    def __init__(self, line: int):
        super().__init__(line)
        self.line = line


def read_lines_alone(
    data: bytes, first: int, limit: int, stats: ReadStats
) -> Iterator[tuple[int, dict | BadInput]]:
    """The records of whole lines (``\\n``-ended; the last may lack it), numbered from
    ``first``, as ``read_source`` gives them where no value spans lines; raises ``NotAlone``
    at the first line where one may."""
    yield from _AloneLineReader(_Pushback(iter((data,))), stats, limit, first).records()


def _rereader(source: Source, stream) -> Callable[[], Generator[bytes, None, None]] | None:
    """For a plain local file, a function that reads its bytes again from the start, as
    ``read_source`` sees them; None for stdin, a remote object or a gzip file (read again, it
    would cost more than what a look ahead saves)."""
    try:
        fd = stream.fileno()
        if not stat.S_ISREG(os.fstat(fd).st_mode) or os.pread(fd, 2, 0) == GZIP_MAGIC:
            return None
    except (AttributeError, OSError, ValueError):
        return None

    def reread() -> Generator[bytes, None, None]:
        again = source.open()
        try:
            yield from _lf(_as_utf8(_chunks(again, ReadStats())))
        finally:
            again.close()

    return reread


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

    Inflating and file reads release the GIL, so on two cores the reading is nearly free. At most
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
    """The next item, calling ``before_wait`` first and again every ``IDLE_TICK`` s of waiting."""
    while True:
        before_wait()
        try:
            return box.get(timeout=IDLE_TICK)
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
    # ISA-L inflates about twice as fast as zlib, and also releases the GIL while it works.
    inflater = isal_zlib.decompressobj(wbits=31)
    in_member = False
    pending: bytes | None = first
    after = b""  # what followed a member: too short yet to tell another member from junk
    while True:
        while pending:
            in_member = True
            try:
                data = inflater.decompress(pending, CHUNK)
            except isal_zlib.error as exc:  # type: ignore[misc]  # its stub types a class an instance
                raise _ReadFailure(CORRUPT_GZIP, f"corrupt gzip data: {exc}") from None
            if data:
                yield data
            if inflater.eof:
                pending = inflater.unused_data
                inflater, in_member = isal_zlib.decompressobj(wbits=31), False
                if pending == GZIP_MAGIC[:1]:
                    after, pending = pending, b""
                elif pending and not pending.startswith(GZIP_MAGIC):
                    raise _ReadFailure(CORRUPT_GZIP, "data after the end of the gzip stream")
            else:
                pending = inflater.unconsumed_tail
        pending = next(chunks, None)
        if pending is None:
            if after:  # one byte of a member that the input cut short
                raise _ReadFailure(CORRUPT_GZIP, "gzip stream ends early (a truncated download?)")
            break
        if after:
            pending, after = after + pending, b""
            if not pending.startswith(GZIP_MAGIC):
                raise _ReadFailure(CORRUPT_GZIP, "data after the end of the gzip stream")
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


def _after(held: Iterable[bytes], rest: Iterator[bytes]) -> Iterator[bytes]:
    yield from held
    yield from rest


def _chained(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


class _Pushback:
    """Chunks, with bytes read ahead put back in front of them."""

    def __init__(self, chunks: Iterator[bytes]):
        self.chunks = chunks
        self.front: list[bytes] = []
        self.taken = 0  # bytes given and not put back: where the next chunk starts

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        chunk = self.front.pop() if self.front else next(self.chunks)
        self.taken += len(chunk)
        return chunk

    def push(self, *data: bytes) -> None:
        """Put ``data`` back, to be read next in this order."""
        self.front.extend(part for part in reversed(data) if part)
        self.taken -= sum(map(len, data))


_LEAD = _always(re.compile(rb"(?:[ \t\n]|\xef\xbb\xbf)*"))
_RAW_LEAD = _always(re.compile(rb"(?:[ \t\r\n]|\xef\xbb\xbf)*"))  # before _lf makes \r \n


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
    """The value cannot be read on: one record, and what follows goes to the line reader."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


class _TooLong(Exception):
    """A value (an item, a key of a document) longer than the limit."""


# Where an object item may end: '}' then ',' and the next item (not a key), or the array's ']'.
_ITEM_END = re.compile(rb'\}[ \t\n]*(?:,[ \t\n]*[^ \t\n"]|\])')
_SPACE = _always(re.compile(rb"[ \t\n]*"))
_COMMA = re.compile(rb"[ \t\n]*,[ \t\n]*")
_BLANKS = _always(re.compile(rb"(?:[ \t]|\xef\xbb\xbf)*"))  # what may separate values on one line
_LINE_REST = _always(re.compile(rb"[ \t]*\n?"))
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_SCALAR = re.compile(rb'[^,\]}\s"]+')
_SKIP_PLAIN = _always(re.compile(rb'[^"\[\]{}\n]*'))
_SKIP_STRING = _always(re.compile(rb'[^"\\\n]*(?:\\[^\n][^"\\\n]*)*'))
_FAST_TRIES = 8
# Items are parsed about this many bytes at a time, in one call: per item, Python's work would
# cost as much as the parsing. Runs of 1 MiB were slower (the objects made at once outgrow the
# CPU's caches), and those of 64 KiB took a few MiB more memory than these, for no more speed.
_RUN_BYTES = 16 << 10
# After an object item: its '}', and the ',' with the blanks up to the next item. Matching no
# more than that, it passes over no other '}'.
_RUN_NEXT = re.compile(rb'\}[ \t\n]*,[ \t\n]*(?=[^ \t\n"])')
_SPOOL_IN_MEMORY = 8 * CHUNK
_ENTRY = struct.Struct("<?II")  # messages (else a BadInput), how many, size of the JSON after


class _ValueStream:
    """JSON values too long for the line reader, streamed from where it stopped to the end of
    their line: each value's extent is found in the bytes and only what is needed is parsed.

    An array gives its items one by one. An object is read key by key: its ``batch`` array is
    streamed and its other keys are merged into every item, as ``_batch_items`` does; any other
    object longer than the limit is one record, skipped without being held. Each item is limited
    to ``limit`` bytes, and one over it is one record. A line that does not start like JSON is
    one ``line_too_long`` record. When a value breaks (a missing ',', a truncated file), one
    record says so and what follows is read by the line reader from that point.
    """

    def __init__(
        self,
        chunks: _Pushback,
        stats: ReadStats,
        limit: int,
        first: int = 1,
        reread: Callable[[], Generator[bytes, None, None]] | None = None,
    ):
        self.chunks, self.stats, self.limit, self.reread = chunks, stats, limit, reread
        self.base = chunks.taken  # where the bytes read here start, for ``reread``
        self.buf, self.pos, self.line, self.last = b"", 0, first, b""
        self.dropped = 0  # bytes dropped from the front of buf: where buf starts in the input
        self.one_by_one_to = 0  # where runs are tried again, after one that could not be parsed

    def records(self, lead: _Matches[bytes] = _BLANKS) -> _Records:
        """(line, message or BadInput) per message; returns the line at which reading goes on."""
        char = self._skip(lead)
        if char not in (b"[", b"{"):
            text = f"line longer than {self.limit:,} bytes (--max-line-bytes); skipped"
            yield self.line, BadInput(LINE_TOO_LONG, text)
            self._drop_line()
            return self._hand_over()
        while char in (b"[", b"{"):
            opened = self.line
            what = "array" if char == b"[" else "document"
            try:
                yield from self._array() if char == b"[" else self._object(opened)
            except _Broken as broken:
                message = f"not valid JSON ({broken.message}; the {what} opened on line {opened})"
                yield self.line, BadInput(broken.reason, message)
                return self._hand_over()
            char = self._skip(_BLANKS)
        return self._end_line()

    def _array(self):
        self._advance(self.pos + 1)  # '['
        for lines, items, _ in self._runs("array", "an empty array: no messages"):
            yield from zip(lines, items, strict=True)

    def _runs(self, what: str, empty: str):
        """(lines, items, JSON) for the items of the array whose '[' was just read, many at a
        time: each item's line, the items (messages or BadInputs), and the messages' JSON as an
        array (None for a BadInput), which a spool keeps to parse again."""
        opened = self.line
        if self._skip(_SPACE) == b"]":
            self._advance(self.pos + 1)
            yield [opened], [BadInput(EMPTY_BATCH, empty)], None
            return
        index = 0
        while True:
            run = self._run()
            if run is not None:
                yield run
                index += len(run[0])
            else:
                yield from self._one_item(what, index)
                index += 1
            char = self._skip(_SPACE)
            if char == b"]":
                self._advance(self.pos + 1)
                return
            if char != b",":
                shown = repr(char.decode("utf-8", "replace")) if char else "the end"
                raise _Broken(INVALID_JSON, f"expected ',' or ']' in the array, not {shown}")
            self._advance(self.pos + 1)
            self._skip(_SPACE)

    def _one_item(self, what: str, index: int):
        """The run of the one item at ``pos``, which is left after it."""
        line = self.line
        try:
            item, end = self._item()
        except _TooLong:
            why = f"an item longer than {self.limit:,} bytes (--max-line-bytes); skipped"
            yield [line], [BadInput(LINE_TOO_LONG, why)], None
            self._skip_value(0)
            return
        text = None
        if type(item) is dict:
            text = b"[" + self.buf[self.pos : end] + b"]"
        elif type(item) is not BadInput:
            item = _not_an_object(item, f"{what} item {index} is")
        self._advance(end)
        yield [line], [item], text

    def _run(self) -> tuple[list[int], list[dict], bytes] | None:
        """The object items from ``pos`` to about ``_RUN_BYTES`` on, parsed in one call, as a run
        (see ``_runs``), with ``pos`` after the last; None when they cannot all be (a value not an
        object, a fault, a '},{' inside a string), and then until the end of that stretch.

        Every object item that a ',' follows ends where ``_RUN_NEXT`` matches, though it may also
        match elsewhere (in a string), so when the stretch up to its last match parses as an
        array of as many objects as there were matches, each match is an item's end.
        """
        if self._offset() < self.one_by_one_to:
            return None
        if len(self.buf) - self.pos < _RUN_BYTES:
            self._more(required=False)
        buf, pos = self.buf, self.pos
        stop = min(len(buf), pos + _RUN_BYTES)
        found = [match.span() for match in _RUN_NEXT.finditer(buf, pos, stop)]
        try:
            if len(found) < 2 or self.limit < _RUN_BYTES and self._any_too_long(found):
                raise ValueError
            end = found[-1][0] + 1
            text = b"[" + buf[pos:end] + b"]"
            items = orjson.loads(text)
            if len(items) != len(found) or set(map(type, items)) != {dict}:
                raise ValueError
        except ValueError:  # orjson.JSONDecodeError too
            self.one_by_one_to = self.dropped + stop
            return None
        last = found[-2][1]  # where the last item starts
        if buf.count(b"\n", pos, last):
            starts = [pos, *(start for _, start in found[:-1])]
            steps = map(buf.count, repeat(b"\n"), starts, starts[1:])
            lines = list(accumulate(steps, initial=self.line))
        else:
            lines = [self.line] * len(items)
        newlines = lines[-1] - self.line + buf.count(b"\n", last, end)
        self.line += newlines
        self.stats.lines += newlines
        self.pos = end
        return lines, items, text

    def _any_too_long(self, found: list[tuple[int, int]]) -> bool:
        starts = [self.pos, *(start for _, start in found)]
        pairs = zip(found, starts, strict=False)
        return any(end + 1 - start > self.limit for (end, _), start in pairs)

    def _object(self, opened: int):
        """The messages of the object at ``pos``, read key by key (it may be a batch far longer
        than the limit); one record if it is another object longer than the limit.

        The keys after the ``batch`` array (analytics-node writes ``context`` there) are merged
        into every item too. A plain file is read ahead for them (``_keys_after``), so that the
        items go out as they are read; otherwise (stdin or a remote object cannot be read twice,
        or the look ahead gave up) the items are held until the document ends, in a spool that
        goes to a temporary file past a few MiB, which keeps memory flat.
        """
        begin = self._offset()
        self._advance(self.pos + 1)  # '{'
        keys: dict = {}
        spool: _Spool | _NoSpool | None = None
        in_batch = 0  # bytes of the batch array, which alone may pass the limit
        closed = False
        try:
            char = self._skip(_SPACE)
            while char != b"}":
                key = self._key()
                if key == "batch" and spool is None and self._skip(_SPACE) == b"[":
                    start = self._offset()
                    after = self._keys_after(start)
                    self._advance(self.pos + 1)
                    runs = self._runs("batch", "a batch with no messages")
                    if after is not None:
                        spool = _NO_SPOOL
                        share = _sharer(_shared({**keys, **after}))
                        for lines, items, _ in runs:
                            for line, item in zip(lines, items, strict=True):
                                yield line, share(item) if type(item) is dict else item
                    else:
                        spool = _Spool()
                        for lines, items, text in runs:
                            spool.add(lines, items[0] if text is None else text)
                    in_batch = self._offset() - start
                else:
                    keys[key] = self._small_value()
                if self._offset() - begin - in_batch > self.limit:
                    raise _TooLong
                char = self._skip(_SPACE)
                if char == b",":
                    self._advance(self.pos + 1)
                    char = self._skip(_SPACE)
                elif char != b"}":
                    shown = repr(char.decode("utf-8", "replace")) if char else "the end"
                    raise _Broken(INVALID_JSON, f"expected ',' or '}}' in the object, not {shown}")
            self._advance(self.pos + 1)
            closed = True
            if self._offset() - begin - in_batch > self.limit:
                raise _TooLong
        except _TooLong:
            if spool is not None and spool is not _NO_SPOOL:
                spool.close()
            if not closed:
                self._skip_value(1)
            text = f"a value longer than {self.limit:,} bytes (--max-line-bytes); skipped"
            yield opened, BadInput(LINE_TOO_LONG, text)
            return
        except _Broken:
            if spool is not None and spool is not _NO_SPOOL:  # what the truncated document holds
                yield from spool.replay(_shared(keys))
            raise
        if spool is None:
            yield from ((opened, item) for item in _messages(keys))
        elif spool is not _NO_SPOOL:
            yield from spool.replay(_shared(keys))

    def _keys_after(self, start: int) -> dict | None:
        """The keys after the array that opens at ``start``, read ahead in a plain file."""
        if self.reread is None:
            return None
        chunks = self.reread()
        try:
            return _keys_after(chunks, self.base + start + 1, self.limit)
        finally:
            chunks.close()

    def _key(self) -> str:
        """The key at ``pos``, read with the ':' after it."""
        while True:
            found = _STRING.match(self.buf, self.pos)
            if found is not None:
                break
            if self.buf[self.pos : self.pos + 1] != b'"':
                raise _Broken(INVALID_JSON, "a key expected")
            if len(self.buf) - self.pos > self.limit:
                raise _TooLong
            self._more()
        try:
            key = orjson.loads(found.group())
        except orjson.JSONDecodeError as exc:
            raise _Broken(INVALID_JSON, f"a bad key: {exc}") from None
        self._advance(found.end())
        if self._skip(_SPACE) != b":":
            raise _Broken(INVALID_JSON, "':' expected after a key")
        self._advance(self.pos + 1)
        self._skip(_SPACE)
        return key

    def _small_value(self):
        """The value at ``pos`` (one of a document's keys), parsed."""
        end = self._counted_end()
        try:
            value = orjson.loads(memoryview(self.buf)[self.pos : end])
        except orjson.JSONDecodeError as exc:
            raise _Broken(INVALID_JSON, str(exc)) from None
        self._advance(end)
        return value

    def _item(self) -> tuple[object, int]:
        """The item at ``pos`` (parsed, or a BadInput) and where it ends."""
        if self.buf[self.pos : self.pos + 1] == b"{":
            found = self._object_end()
            if found is not None:
                return found
        end = self._counted_end()
        try:
            return orjson.loads(memoryview(self.buf)[self.pos : end]), end
        except orjson.JSONDecodeError as exc:
            return _bad_line(self.buf[self.pos : end], exc), end

    def _object_end(self) -> tuple[dict, int] | None:
        """The object at ``pos`` and where it ends, found by parsing slices; None after a few
        misses, or when no slice short enough ends like an item (a string item may follow)."""
        search, tries = self.pos, 0
        while tries < _FAST_TRIES:
            found = _ITEM_END.search(self.buf, search)
            if found is None and len(self.buf) - self.pos <= self.limit:
                shift = self._more(required=False)
                if shift is None:
                    return None
                search -= shift
                continue
            if found is None or found.start() - self.pos >= self.limit:
                return None
            end = found.start() + 1
            try:
                return orjson.loads(memoryview(self.buf)[self.pos : end]), end
            except orjson.JSONDecodeError:
                tries, search = tries + 1, end
        return None

    def _counted_end(self) -> int:
        """Where the value at ``pos`` ends, by counting brackets outside strings."""
        end = self._scanned_end()
        if end - self.pos > self.limit:
            raise _TooLong
        return end

    def _scanned_end(self) -> int:
        first = self.buf[self.pos : self.pos + 1]
        if first not in (b"{", b"["):
            pattern = _STRING if first == b'"' else _SCALAR
            while True:
                found = pattern.match(self.buf, self.pos)
                cut = found.end() == len(self.buf) if found else first == b'"'
                if cut and len(self.buf) - self.pos <= self.limit:
                    if self._more(required=False) is not None:
                        continue
                if found is None:
                    if cut:
                        raise _TooLong
                    raise _Broken(INVALID_JSON, "a value expected")
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
                raise _TooLong
            at -= self._more()

    def _skip_value(self, depth: int) -> None:
        """Go past the value at ``pos``, inside ``depth`` open brackets, without holding it: to
        its last closing bracket, or to a line that starts with a bracket (a value of its own,
        so this one was cut short), or to the end of the input."""
        in_string = False
        while True:
            pattern = _SKIP_STRING if in_string else _SKIP_PLAIN
            self.pos = pattern.match(self.buf, self.pos).end()
            if self.pos + 1 >= len(self.buf) and self._more(required=False) is None:
                if self.pos >= len(self.buf):
                    return
            char = self.buf[self.pos]
            if char == 0x0A:  # '\n': a string cannot go on past it
                in_string = False
                self._advance(self.pos + 1)
                if self.buf[self.pos : self.pos + 1] in (b"{", b"["):
                    return
            elif char == 0x5C:  # a backslash in a string: skip what it escapes, not a line break
                self.pos += 1 if self.buf[self.pos + 1 : self.pos + 2] in (b"\n", b"") else 2
            elif char == 0x22:  # '"'
                self.pos += 1
                in_string = not in_string
                if not in_string and depth == 0:
                    return
            elif char in _CLOSES:
                self.pos += 1
                depth -= 1
                if depth <= 0:
                    return
            else:
                self.pos += 1
                depth += 1

    @overload
    def _more(self, required: Literal[True] = True) -> int: ...

    @overload
    def _more(self, required: Literal[False]) -> int | None: ...

    def _more(self, required: bool = True) -> int | None:
        """Read the next chunk, dropping what is read; returns how far positions moved back, or
        None at the end of the input when more is not ``required``."""
        chunk = next(self.chunks, None)
        if chunk is None:
            if not required:
                return None
            raise _Broken(INVALID_JSON, "the input ends inside the value (a truncated file?)")
        shift = self.pos
        self.last = self.buf[self.pos - 1 : self.pos] or self.last
        self.buf, self.pos = self.buf[self.pos :] + chunk, 0
        self.dropped += shift
        return shift

    def _offset(self) -> int:
        return self.dropped + self.pos

    def _advance(self, to: int) -> None:
        newlines = self.buf.count(b"\n", self.pos, to)
        self.line += newlines
        self.stats.lines += newlines
        self.pos = to

    def _skip(self, pattern: _Matches[bytes]) -> bytes:
        """Skip what ``pattern`` matches; the next byte, b"" at the end of the input."""
        while True:
            self._advance(pattern.match(self.buf, self.pos).end())
            if self.pos < len(self.buf):
                return self.buf[self.pos : self.pos + 1]
            if self._more(required=False) is None:
                return b""

    def _end_line(self) -> int:
        """After the values: the rest of their line (blanks, a line break) is theirs."""
        self._advance(_LINE_REST.match(self.buf, self.pos).end())
        return self._hand_over()

    def _drop_line(self) -> None:
        while (cut := self.buf.find(b"\n", self.pos)) < 0:
            self.pos = len(self.buf)
            if self._more(required=False) is None:
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


# JSON's structure without its strings' contents: every byte but '"', '[', ']', '{' and '}' goes.
_NOT_STRUCTURE = bytes(set(range(256)) - set(b'"[]{}'))
_STRINGS = re.compile(rb'"[^"]*"')  # once backslashes are known to be absent
_OPENERS = {ord("}"): ord("{"), ord("]"): ord("[")}


def _keys_after(chunks: Iterator[bytes], offset: int, limit: int) -> dict | None:
    """The keys after the array whose items start at ``offset`` of ``chunks``, up to the end of
    the object that holds it, or None when they cannot be found quickly and surely.

    The array is crossed a chunk at a time without parsing: a chunk with no backslash (so no
    escaped quote) is cut down to its quotes and brackets, its strings dropped, and the
    brackets that pair within it removed; what is left says how far it closes what was open.
    Only the chunk where the array ends is scanned token by token. Two quotes in a row go
    first, in C: whether they open and close a string or close one and open the next, every
    bracket stays as much in a string or out of one as it was.
    """
    stack = bytearray()  # the brackets open inside the array
    in_string = False
    taken = 0
    for chunk in chunks:
        if taken + len(chunk) <= offset:
            taken += len(chunk)
            continue
        chunk, taken = chunk[max(0, offset - taken) :], offset
        if b"\\" in chunk:
            return None
        shape = chunk.translate(None, _NOT_STRUCTURE).replace(b'""', b"")
        shape = _STRINGS.sub(b"", b'"' + shape if in_string else shape)
        cut = shape.find(b'"')
        if cut >= 0:  # a string open at the chunk's end
            shape = shape[:cut]
        shut = _unpaired(shape)
        if shut is None:
            return None
        closers, openers = shut
        if len(closers) > len(stack):
            return _tail(chunk, chunks, stack, in_string, limit)
        for closer in closers:
            if stack.pop() != _OPENERS[closer]:
                return None
        stack += openers
        in_string = cut >= 0
    return None


def _unpaired(shape: bytes) -> tuple[bytes, bytes] | None:
    """The brackets of ``shape`` that close what was open before it, and those it leaves open;
    None when they do not nest."""
    while True:
        smaller = shape.replace(b"{}", b"").replace(b"[]", b"")
        if smaller == shape:
            break
        shape = smaller
    rest = shape.lstrip(b"]}")
    if rest.strip(b"[{"):
        return None
    return shape[: len(shape) - len(rest)], rest


def _tail(chunk: bytes, chunks: Iterator[bytes], stack: bytearray, in_string: bool, limit: int):
    """The keys after the array, which ends in ``chunk``: found token by token from there."""
    at = chunk.index(b'"') + 1 if in_string else 0
    for match in _TOKEN.finditer(chunk, at):
        char = chunk[match.start()]
        if char == 0x22:
            continue
        if char not in _CLOSES:
            stack.append(char)
        elif stack:
            if stack.pop() != _CLOSES[char]:
                return None
        elif char == ord("]"):
            return _rest_of_object(chunk[match.end() :], chunks, limit)
        else:
            return None
    return None


def _rest_of_object(rest: bytes, chunks: Iterator[bytes], limit: int) -> dict | None:
    """The keys in ``rest`` (and what follows it) up to the '}' that closes their object."""
    stack = bytearray()
    at = 0
    while True:
        for match in _TOKEN.finditer(rest, at):
            char = rest[match.start()]
            if char == 0x22:
                if match.group(1) is None:
                    break  # the string goes on in the next chunk
            elif char not in _CLOSES:
                stack.append(char)
            elif stack:
                if stack.pop() != _CLOSES[char]:
                    return None
            else:
                return _parsed_keys(rest[: match.end()])
            at = match.end()
        if len(rest) > limit:
            return None
        more = next(chunks, None)
        if more is None:
            return None
        rest += more


def _parsed_keys(text: bytes) -> dict | None:
    """``text`` is what follows an array up to its object's '}': ',' and keys, or nothing."""
    text = text.strip(b" \t\n")
    if text == b"}":
        return {}
    if not text.startswith(b","):
        return None
    try:
        keys = orjson.loads(b"{" + text[1:])
    except orjson.JSONDecodeError:
        return None
    return keys if type(keys) is dict else None


class _NoSpool(Enum):
    READ_AHEAD = "a batch whose items went out as they were read"


_NO_SPOOL: Final = _NoSpool.READ_AHEAD


class _Spool:
    """A batch document's records, held until the document ends: in memory up to a few MiB,
    then in a temporary file. A run of messages is kept as the JSON array they were parsed from,
    and parsed again in one call."""

    def __init__(self):
        self.file = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)
        self.count = 0

    def add(self, lines: list[int], items: bytes | BadInput) -> None:
        """Hold a run of messages (the JSON array of them) or a BadInput, with their lines."""
        if isinstance(items, BadInput):
            is_run, data = False, orjson.dumps([items.reason, items.message])
        else:
            is_run, data = True, items
        header = _ENTRY.pack(is_run, len(lines), len(data))
        self.file.write(b"".join((header, array("q", lines).tobytes(), data)))
        self.count += 1

    def replay(self, shared: dict) -> Iterator[tuple[int, dict | BadInput]]:
        """The records, with the document's shared keys merged into every message."""
        try:
            self.file.seek(0)
            read, share = self.file.read, _sharer(shared)
            for _ in range(self.count):
                is_run, count, size = _ENTRY.unpack(read(_ENTRY.size))
                lines = array("q")
                lines.frombytes(read(8 * count))
                value = orjson.loads(read(size))
                if not is_run:
                    yield lines[0], BadInput(*value)
                    continue
                for line, item in zip(lines, value, strict=True):
                    yield line, share(item)
        finally:
            self.close()

    def close(self) -> None:
        self.file.close()


class _HandBack(Exception):
    """Thrown into ``_lines``: put back the bytes after the first ``taken`` lines it gave, and
    stop."""

    def __init__(self, taken: int):
        super().__init__(taken)
        self.taken = taken


def _lines(chunks: _Pushback, limit: int) -> Generator[bytes, None, None]:
    """Raw lines (``\\n``-ended, see ``_lf``) without their ending; the last one even without one.

    A line longer than ``limit`` bytes is not given: as soon as it is known to be, it is put back
    in front of ``chunks`` with what follows, ``LONG`` is given, and the lines end (a
    ``_ValueStream`` reads on from there, in flat memory). ``_HandBack`` thrown in puts back
    what was not given yet, and ends the lines too.
    """
    head: list[bytes] = []  # the start of a line that spans chunks
    held = 0
    given = 0  # lines given before this chunk's
    for chunk in chunks:
        parts = chunk.split(b"\n")
        tail = parts.pop()
        if parts:
            if head:
                held += len(parts[0])
                if held > limit:
                    chunks.push(b"".join(head), chunk)
                    yield LONG
                    return
                parts[0] = b"".join([*head, parts[0]])
                head = []
            stop = len(parts)
            if len(chunk) > limit:  # only then can a line inside the chunk be too long
                stop = next((n for n, part in enumerate(parts) if len(part) > limit), stop)
            try:
                yield from parts if stop == len(parts) else parts[:stop]
            except _HandBack as back:
                chunks.push(b"\n".join([*parts[back.taken - given :], tail]))
                return
            if stop < len(parts):
                chunks.push(b"\n".join([*parts[stop:], tail]))
                yield LONG
                return
            given += len(parts)
            held = 0
        if tail:
            head.append(tail)
            held += len(tail)
            if held > limit:
                chunks.push(b"".join(head))
                yield LONG
                return
    if head:
        try:
            yield b"".join(head)
        except _HandBack:
            return  # that last line is all there was, and the reader has it


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

    A line, or a candidate, longer than the limit is handed over: its bytes are put back in
    front of the chunks, and ``handed_over`` tells the caller to read on with a ``_ValueStream``.
    """

    def __init__(self, chunks: _Pushback, stats: ReadStats, limit: int, first: int = 1):
        self.chunks, self.stats, self.limit, self.first = chunks, stats, limit, first
        self.lines = _lines(chunks, limit)
        self.start_lines = stats.lines
        self.handed_over = False

    def records(self) -> _Records:
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
        return number + 1

    def _unparsed(self, line: bytes, number: int):
        """Records for a line that is not one JSON value, and for the lines its value takes;
        returns the number of the last line read."""
        while True:
            if line is LONG:
                self._hand_over([], LONG)
                return number - 1
            line = _without_bom(line)
            stack = bytearray()
            if not _opens_a_value(line, stack):
                yield from self._alone(line, number)
                return number
            region, stop = self._candidate(line, stack)
            if stop is _GIVEN:
                return number - 1
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
            if line is LONG or size > self.limit:
                self._hand_over(region, line)
                return region, _GIVEN
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

    def _hand_over(self, region: list[bytes], stop: bytes) -> None:
        """Put the lines of ``region`` and ``stop`` (read last) back in front of what is unread,
        and end the lines: a value too long for them starts there."""
        if stop is not LONG:  # else _lines has put back the long line and what follows
            region = [*region, stop]
            try:
                self.lines.throw(_HandBack(self.stats.lines - self.start_lines))
            except StopIteration:
                pass
        if region:
            self.chunks.push(b"\n".join(region) + b"\n")
        self.stats.lines -= len(region) + (stop is LONG)
        self.handed_over = True

    def _alone(self, line: bytes, number: int) -> Iterator[tuple[int, dict | BadInput]]:
        """Records for one line read on its own: blank, one value, several in a row, or bad."""
        line = _without_bom(line)
        if not line.strip():
            self.stats.blank_lines += 1
            return
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            stack = bytearray()
            if _brackets(line, stack) == _BALANCED and not stack:
                records = _document([line], number)
                assert records is not None  # a single line: no later line it could hide
                yield from records
            else:
                yield number, _bad_line(line, exc)
            return
        for item in _messages(message):
            yield number, item


class _AloneLineReader(_LineReader):
    """A ``_LineReader`` that reads every line alone, and raises ``NotAlone`` where the other
    would read on past it (a line too long, or one that may open a value over several)."""

    def _unparsed(self, line: bytes, number: int):
        if line is LONG or _opens_a_value(_without_bom(line), bytearray()):
            raise NotAlone(number)
        yield from self._alone(line, number)
        return number


def _opens_a_value(line: bytes, stack: bytearray) -> bool:
    """Whether a line that is not one JSON value may start one that later lines close: it
    starts with a bracket, and leaves brackets open (pushed onto ``stack``) and no string."""
    if line.lstrip()[:1] not in (b"{", b"["):
        return False
    return _brackets(line, stack) == _BALANCED and bool(stack)


# No real line holds a newline, so these can mark what is not a line (compared by identity).
LONG = b"\n"  # a line longer than the limit, put back by _lines
_END = b"\n\n"
_GIVEN = b"\n\n\n"  # a candidate handed over

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
    share = _sharer(_shared(batch))
    result: list[dict | BadInput] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            result.append(
                BadInput(NOT_AN_OBJECT, f"batch item {index} is a JSON {_json_kind(item)}")
            )
            continue
        result.append(share(item))
    return result


def _shared(batch: dict) -> dict:
    """What a batch's every message takes from it: its top-level context and integrations."""
    return {
        key: batch[key] for key in ("context", "integrations") if isinstance(batch.get(key), dict)
    }


def _sharer(shared: dict) -> Callable[[dict], dict]:
    """A function that merges ``shared`` into a message, for each of a batch's messages: what
    ``shared`` holds is looked at once, not per message."""
    plan = [(key, value, _merger(value)) for key, value in shared.items()]

    def share(item: dict) -> dict:
        for key, value, merge in plan:
            own = item.get(key)
            item[key] = merge(own) if type(own) is dict else value
        return item

    return share


def _merger(base: dict) -> Callable[[dict], dict]:
    """A function giving ``own`` over ``base``, recursively: the message's own values win."""
    nested = [(key, _merger(value)) for key, value in base.items() if type(value) is dict]

    def merge(own: dict) -> dict:
        merged = {**base, **own}
        for key, merge_into in nested:  # the batch's, usually fewer than the message's own
            mine = own.get(key)
            if type(mine) is dict:
                merged[key] = merge_into(mine)
        return merged

    return merge


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
            too_deep = BadInput(TOO_DEEP, f"nested too deeply; lines to {last} skipped")
            records.append((line_of(pos), too_deep))
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


_INFINITE = "number is infinity when parsed as double"  # orjson's words


def _int_as_orjson_does(text: str) -> int | float:
    value = int(text)
    if -(2**63) <= value < 2**64:
        return value
    try:
        return float(value)
    except OverflowError:
        raise ValueError(_INFINITE) from None


def _float_as_orjson_does(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(_INFINITE)
    return value


def _no_constants(name: str):
    raise ValueError(f"{name} is not JSON")


# Parses documents as orjson parses lines: no NaN or Infinity, huge integers become floats.
_DECODER = json.JSONDecoder(
    parse_int=_int_as_orjson_does,
    parse_float=_float_as_orjson_does,
    parse_constant=_no_constants,
)


def _array_items(
    decoder: json.JSONDecoder, text: str, pos: int
) -> tuple[list[tuple[int, Any]], int]:
    """([(position, value)], end) for the array whose '[' is just before ``pos``."""
    items: list[tuple[int, Any]] = []
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
