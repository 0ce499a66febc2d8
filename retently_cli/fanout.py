"""Reading local files and stdin in worker processes, for the runs that only look (a dry-run, a
plan, a diff).

Most events of a log are skipped at first sight (``matching.FirstSight``: another call type, or a
name no campaign maps), yet each costs an inflate, a parse and a record. Worker processes do that
part, one file each, while the main process takes the files in their order: from a worker it gets
the events it must decide itself as they were read, and each stretch of events skipped at first
sight as one ``Settled``, holding their records already written and their counts. The run's state
(the messageIds seen, the type of each property, the ledger, the batches) stays in the main
process, so every record, and its order, is the one a run in one process writes.

A worker is ``python -m retently_cli.fanout``: tasks come in on its stdin and frames go out on its
stdout, each a 4-byte length and a pickle. Workers take tasks in turn (the n-th local file goes to
worker n mod N), so each worker's frames come in the order the main process reads the files. A
worker that dies is not a lost event: its file is read again here, from the start, passing over
the records already taken, and its later files are read here too. stdin goes to the workers in
pieces of whole lines (see ``FanOut._stdin_entries``).
"""

from __future__ import annotations

import errno
import io
import os
import pickle
import select
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any, BinaryIO, NamedTuple

import orjson

from retently_cli.first_sight import FirstSight, Judged, message_id_of
from retently_cli.launch import SWITCH_INTERVAL
from retently_cli.readers import (
    IDLE_TICK,
    STDIN_NAME,
    BadInput,
    NotAlone,
    ReadStats,
    Source,
    read_lines_alone,
    read_on,
    read_source,
    starts_plainly,
)
from retently_cli.skipped_records import SkippedRecords

# Local files are read by workers once the files listed so far hold this many bytes (as
# stored): below it, starting the workers costs more than it saves.
FANOUT_ABOVE = 16 * 1024 * 1024
_FRAME_ENTRIES = 2_000  # entries a frame holds at most
_FRAME_BYTES = 256 * 1024  # of records written ahead, a frame holds at most about this
_PIPE_BYTES = 1024 * 1024  # asked of the kernel for each pipe (its limit for a user)
_AHEAD_PER_WORKER = 4  # files handed to each worker before the main process reaches them
# Sources listed at most before the first is read, to learn whether the input reaches
# FANOUT_ABOVE (a folder of millions of tiny files is not listed whole into memory).
_LOOK_AHEAD = 4096
_HEADER = struct.Struct("<I")
_DEFAULT_JOBS_MAX = 4  # the main process takes every event in turn: more would wait on it
# What a worker's frames may take while the main process has not reached its file yet: so
# much in memory, then so much in a temporary file (see _Spool).
_HELD_BYTES = 4 * 1024 * 1024
_SPILLED_BYTES = 64 * 1024 * 1024
# How long stdin may take to show it holds FANOUT_ABOVE bytes before it is read here: a slow
# writer's first records wait no longer than this.
_STDIN_WAIT = 0.25


@dataclass(slots=True)
class Settled:
    """Consecutive events of one file that a worker skipped at first sight."""

    count: int
    last_line: int
    reasons: dict[str, int]  # reason -> events
    near_misses: list[tuple[str, str]]  # (event name, hint), in order
    records: bytes  # their NDJSON records, when the run writes records


@dataclass(frozen=True)
class Sieve:
    """What a worker settles by itself: events that no matcher of the run would survey, judged
    by their type and name against ``mapped`` (every name any matcher maps, in config order).
    ``records`` says whether to write their records (``send``) or only count them (``diff``)."""

    mapped: tuple[str, ...]
    records: bool


@dataclass
class _Worker:
    process: subprocess.Popen
    tasks: IO[bytes]
    frames: _Frames
    alive: bool = True
    pieces: int = 0  # pieces of stdin handed to it and not yet taken back whole


class _PieceTask(NamedTuple):
    """A task for a piece of stdin, whose bytes follow it in a frame of their own."""

    task: int
    name: str
    first: int
    max_line_bytes: int


@dataclass
class _Piece:
    """Whole lines of stdin, from line ``first``: handed to ``worker`` as task ``task``, or to
    no worker (then read here, with all that follows)."""

    parts: tuple[bytes | memoryview, ...]
    first: int
    lines: int
    worker: _Worker | None = None
    task: int = -1
    taken: int = 0  # entries taken from the worker so far


@dataclass
class _Turn:
    """A source in the order of reading: read here, or by ``worker`` as ``task``."""

    source: Source
    worker: _Worker | None = None
    task: int = -1
    said: tuple[str, ...] = ()  # what listing it said (a walk's warnings), said before it
    version: tuple[int, ...] | None = None  # the file as handed to the worker (see _version)
    stdin: bool = False  # stdin, which workers may read in pieces (see _stdin_entries)


class FanOut:
    """``jobs``: the worker processes (1: none). ``forced``: workers read every local file,
    however small the input (``--jobs`` given on the command line)."""

    @classmethod
    def for_run(
        cls,
        jobs: int | None,
        mapped: Iterable[str],
        records: bool,
        hidden: Iterable[str] = (),
        warn: Callable[[str], None] = lambda text: None,
    ) -> FanOut | None:
        """Workers as ``--jobs`` asks (None: one per CPU this process may use, up to
        ``_DEFAULT_JOBS_MAX``), or None for none. ``hidden``: environment variables the
        workers are not given (those the API key is read from). ``warn`` says that a worker
        stopped, or that a file changed before it was read again."""
        if sys.platform == "win32":  # select() takes no pipes there
            return None
        forced = jobs is not None
        if jobs is None:
            usable = getattr(os, "sched_getaffinity", None)
            cpus = len(usable(0)) if usable is not None else os.cpu_count() or 1
            jobs = min(cpus, _DEFAULT_JOBS_MAX)
        if jobs < 2:
            return None
        return cls(Sieve(tuple(mapped), records), jobs, forced, frozenset(hidden), warn)

    def __init__(
        self,
        sieve: Sieve,
        jobs: int,
        forced: bool = False,
        hidden: frozenset[str] = frozenset(),
        warn: Callable[[str], None] = lambda text: None,
    ):
        self.sieve = sieve
        self.jobs = jobs
        self.forced = forced
        self.hidden = hidden
        self.warn = warn
        self._workers: list[_Worker] = []
        self._listed = 0
        self._fanning = forced  # every local file from here on goes to a worker
        self._tasks = 0

    def read(
        self,
        sources: Iterable[Source],
        stats: ReadStats,
        before_wait: Callable[[], None] = lambda: None,
    ) -> Iterator[tuple[Source, Iterator[tuple[int, dict | BadInput] | Settled]]]:
        """Each source, with its entries: (line, message or BadInput), or a ``Settled``
        stretch where a worker read it. Take each source's entries before the next source."""
        upcoming: deque[_Turn] = deque()
        # Files are listed ahead of the reading: what a walk says on the way (an ``Inputs``'s
        # warn) is held, and said where a run in one process says it.
        listing: Any = sources
        say = getattr(listing, "warn", None)
        said: list[str] = []
        hold = said.append
        if say is not None:
            listing.warn = hold
        try:
            pending = self._ahead(_listed(sources, said, hold, say))
            while True:
                while len(upcoming) < 1 + _AHEAD_PER_WORKER * len(self._workers):
                    if upcoming and upcoming[-1].stdin:
                        break  # no task goes to a worker before the pieces of stdin do
                    listed = next(pending, None)
                    if listed is None:
                        break
                    upcoming.append(self._turn(listed[0]))
                    upcoming[-1].said = listed[1]
                turn = upcoming.popleft() if upcoming else None
                if say is not None:
                    for text in turn.said if turn is not None else said:
                        say(text)
                if turn is None:
                    return
                yield turn.source, self._entries(turn, stats, before_wait)
        finally:
            if say is not None:
                listing.warn = say
            self.close()

    def close(self) -> None:
        for worker in self._workers:
            self._lost(worker)
            worker.process.wait()
            # Closed as the file objects they are, so none closes the numbers again when freed.
            for pipe in (worker.tasks, worker.process.stdout):
                try:
                    if pipe is not None:
                        pipe.close()
                except OSError:  # a task left unwritten: the worker is gone
                    pass
        self._workers.clear()

    def _ahead(self, listed: Iterator[_Listed]) -> Iterator[_Listed]:
        """``listed``, once it is known whether workers read the first files too: the sources
        are listed ahead until their local files hold FANOUT_ABOVE bytes (then every local file
        goes to a worker, the first ones included), the listing ends or ``_LOOK_AHEAD`` are
        held (then files go to workers from where the bytes listed reach FANOUT_ABOVE)."""
        if self._fanning or self.jobs < 2:
            yield from listed
            return
        held: list[_Listed] = []
        size = 0
        for source, said in listed:
            held.append((source, said))
            if source.path is not None:
                size += source.size or 0
            if size >= FANOUT_ABOVE or len(held) >= _LOOK_AHEAD:
                break
        self._fanning = size >= FANOUT_ABOVE
        yield from held
        yield from listed

    def _turn(self, source: Source) -> _Turn:
        if source.path is None or self.jobs < 2:
            return _Turn(source, stdin=source.name == STDIN_NAME and self.jobs > 1)
        self._listed += source.size or 0
        if not self._fanning and self._listed < FANOUT_ABOVE:
            return _Turn(source)
        if not self._workers:
            self._start()
        live = [worker for worker in self._workers if worker.alive]
        if not live:
            return _Turn(source)
        task = self._tasks
        self._tasks += 1
        worker = live[task % len(live)]
        walked = source.skip_unless_json is not None
        try:
            _put(worker.tasks, (task, source.name, source.path, source.size,
                                source.max_line_bytes, walked))  # fmt: skip
        except OSError:
            self._lost(worker)
            return _Turn(source)
        return _Turn(source, worker, task, version=_version(source.path))

    def _start(self) -> None:
        for _ in range(self.jobs):
            try:
                process = subprocess.Popen(
                    [sys.executable, "-m", "retently_cli.fanout"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    # Out of the terminal's process group: Ctrl-C is the main process's to handle
                    # (a worker still starting would die of it with a traceback). A worker ends at
                    # the end of its pipes, so none outlives the main process, however it ends.
                    start_new_session=True,
                    env=self._worker_environment(),
                )
            except OSError:  # no process or pipe to be had (a limit): the files are read here
                if not self._workers:
                    self.jobs = 1  # by this process alone, as --jobs 1 reads
                break
            assert process.stdin is not None and process.stdout is not None
            _widen(process.stdin.fileno())
            _widen(process.stdout.fileno())
            worker = _Worker(process, process.stdin, _Frames(process.stdout.fileno()))
            self._workers.append(worker)
            try:
                _put(worker.tasks, self.sieve)
            except OSError:
                self._lost(worker)

    def _worker_environment(self) -> dict[str, str]:
        env = {name: value for name, value in os.environ.items() if name not in self.hidden}
        # One malloc arena: a worker's reading thread would otherwise get its own, about
        # 7 MB more resident per worker for no speed (glibc; ignored elsewhere).
        env.setdefault("MALLOC_ARENA_MAX", "1")
        return env

    def _entries(self, turn: _Turn, stats: ReadStats, before_wait: Callable[[], None]):
        if turn.stdin:
            yield from self._stdin_entries(turn.source, stats, before_wait)
            return
        taken, last_line = 0, 0
        if turn.worker is not None:
            before = _counts(stats)
            stopped = yield from self._from_worker(turn, stats, before_wait)
            if stopped is None:
                return
            taken, last_line, why = stopped
            _set_counts(stats, before)  # the file is counted as the reading here finds it
            if why is not None:
                self.warn(f"{turn.source.name}: {why}; read here instead")
        changed = bool(taken) and _version(turn.source.path) != turn.version
        if changed:
            self._changed(turn.source.name, last_line)
        for entry in read_source(turn.source, stats, before_wait):
            if taken and entry[0]:  # given already, by the worker (line 0: it cannot open now)
                taken -= 1
                if not (taken or changed) and entry[0] != last_line:
                    changed = True
                    self._changed(turn.source.name, last_line)
            else:
                yield entry
        if taken and not changed:
            self._changed(turn.source.name, last_line)

    def _stdin_entries(self, source: Source, stats: ReadStats, before_wait: Callable[[], None]):
        """stdin, in pieces of whole lines that the workers read, each alone (see
        ``read_lines_alone``), while this process reads on and takes their entries in order.
        From the first line a worker may not read alone, or a worker lost, every line is read
        here (``read_on``), as one reading of the whole stream reads it."""
        try:
            stream = source.open()
        except OSError:
            yield from read_source(source, stats, before_wait)
            return
        stats.sources += 1
        base = stats.lines
        feed = _Feed(stream, stats)
        restart: tuple[int, int] | None = (1, 0)  # the line to read on from, entries given of it
        try:
            if self._fans_stdin(feed, before_wait):
                restart = yield from self._pieces(source, feed, stats, base, before_wait)
            if restart is not None:
                first, given = restart
                for entry in read_on(source, feed, stats, base, feed.held(), first, before_wait):
                    if given:
                        given -= 1
                    else:
                        yield entry
        finally:
            stats.per_source[source.name] = stats.lines - base

    def _fans_stdin(self, feed: _Feed, before_wait: Callable[[], None]) -> bool:
        """Whether workers read stdin: it holds FANOUT_ABOVE bytes (or workers read every file),
        and starts as lines that may be read alone."""
        if self._fanning:
            feed.look_ahead(64 * 1024, 0, before_wait)
        else:
            feed.look_ahead(FANOUT_ABOVE, _STDIN_WAIT, before_wait)
            if feed.held_bytes < FANOUT_ABOVE:
                return False
        plain = starts_plainly(feed.peek(4096))
        while plain is None and not feed.ended and feed.held_bytes < 4096:
            feed.look_ahead(feed.held_bytes + 1, None, before_wait)  # a pipe's first read: 1 byte
            plain = starts_plainly(feed.peek(4096))
        if not plain:
            return False
        if not self._workers:
            self._start()
        return any(worker.alive for worker in self._workers)

    def _pieces(self, source: Source, feed: _Feed, stats: ReadStats, base: int, before_wait):
        """Yields the entries of stdin's pieces in order. Returns None once stdin is read whole,
        else (line, entries of it given already) to read on from here."""
        live = [worker for worker in self._workers if worker.alive]
        size = _piece_bytes(live)
        if size is None:
            return 1, 0
        pieces: deque[_Piece] = deque()
        carry = b""  # the start of a line whose end is not read yet
        line = 1  # the first line of the next piece
        blank = stats.blank_lines  # blank lines before the first piece not taken whole
        dealt = 0
        dealing = True
        loads = orjson.loads
        while True:
            while dealing:
                worker = live[dealt % len(live)]
                if worker.pieces >= _AHEAD_PER_WORKER or (pieces and not feed.ready()):
                    break
                if not pieces:
                    feed.wait(before_wait)
                data = feed.read(size - len(carry))
                if not data:  # the end, or a read that failed (said as read_on reads on)
                    dealing = False
                    if feed.error is not None:
                        pieces.append(_Piece((carry,), line, 0))
                    elif carry:
                        last = _lf(carry)  # the last line, without its \n
                        piece = _Piece((last,), line, last.count(b"\n") + (last[-1:] != b"\n"))
                        pieces.append(self._deal(piece, dealt, live, source))
                    carry = b""
                    break
                cut = data.rfind(b"\n") + 1
                if not cut:
                    carry += data
                    if len(carry) >= size:  # a line longer than a piece can be: read here
                        pieces.append(_Piece((carry,), line, 0))
                        carry = b""
                        dealing = False
                    continue
                parts: tuple[bytes | memoryview, ...] = (memoryview(data)[:cut],)
                if carry:
                    parts = (carry, *parts)
                if b"\r" in data or b"\r" in carry:
                    whole = _lf(b"".join(parts))
                    parts, count = (whole,), whole.count(b"\n")
                else:
                    count = data.count(b"\n", 0, cut)  # a carry holds no \n
                piece = self._deal(_Piece(parts, line, count), dealt, live, source)
                pieces.append(piece)
                carry = data[cut:]
                line += count
                dealt += 1
                if piece.worker is None:
                    dealing = False
            if not pieces:
                return None
            head = pieces[0]
            reader = head.worker
            if reader is None:
                return self._read_here(pieces, carry, feed, head.first, 0, stats, base)
            frames = reader.frames
            if not frames.ready():
                room = dealing and live[dealt % len(live)].pieces < _AHEAD_PER_WORKER
                if room and feed.ready():
                    continue
                before_wait()
                waits = [frames.fd] + ([feed.fd] if room and feed.fd is not None else [])
                select.select(waits, [], [], IDLE_TICK)
                if not frames.ready():
                    continue
            frame = frames.take()
            kind = None if frame is None or frame[1] != head.task else frame[0]
            if kind == "entries":
                assert frame is not None
                for entry in frame[2]:
                    if len(entry) == 3:
                        head.taken += 1
                        number, item, blank_lines = entry
                        stats.lines, stats.blank_lines = base + number, blank + blank_lines
                        yield number, loads(item) if type(item) is bytes else item
                    else:
                        settled = Settled(*entry[:5])
                        head.taken += settled.count
                        stats.lines = base + settled.last_line
                        stats.blank_lines = blank + entry[5]
                        yield settled
                lines, blank_lines, _ = frame[3]
                stats.lines, stats.blank_lines = base + head.first - 1 + lines, blank + blank_lines
            elif kind == "end":
                assert frame is not None
                blank += frame[2][1]
                stats.lines, stats.blank_lines = base + head.first - 1 + head.lines, blank
                pieces.popleft()
                reader.pieces -= 1
            elif kind == "hand back":  # a line it may not read alone
                assert frame is not None
                first, given, blank_lines = frame[2]
                stats.blank_lines = blank + blank_lines
                return self._read_here(pieces, carry, feed, first, given, stats, base)
            else:
                why = f"failed ({frame[2]})" if kind == "crash" else "stopped"  # type: ignore[index]
                self.warn(f"{source.name}: the worker reading it {why}; read here instead")
                stats.blank_lines = blank
                return self._read_here(pieces, carry, feed, head.first, head.taken, stats, base)

    def _deal(self, piece: _Piece, dealt: int, live: list[_Worker], source: Source) -> _Piece:
        worker = live[dealt % len(live)]
        task = self._tasks
        try:
            _put_piece(worker.tasks, _PieceTask(task, source.name, piece.first,
                                                source.max_line_bytes), piece.parts)  # fmt: skip
        except OSError:  # the worker is gone: this piece, and the rest, are read here
            return piece
        self._tasks += 1
        worker.pieces += 1
        piece.worker, piece.task = worker, task
        return piece

    def _read_here(self, pieces, carry, feed, first: int, given: int, stats, base: int):
        """Stdin is read here from line ``first`` (of the first piece) on: the bytes of the
        pieces out, from that line, go back in front of what is still unread. Every worker is
        stopped (its tasks may be pieces not to read now); later files start others."""
        head = b"".join(pieces[0].parts)
        offset = 0
        for _ in range(first - pieces[0].first):
            offset = head.index(b"\n", offset) + 1
        held = [head[offset:], *(b"".join(piece.parts) for piece in list(pieces)[1:]), carry]
        feed.put_back(held)
        stats.lines = base + first - 1
        self.close()
        return first, given

    def _changed(self, name: str, last_line: int) -> None:
        """The events passed over on reading again are not those the worker gave: the file
        was truncated or replaced in between. Said, as records may repeat or be missing."""
        self.warn(
            f"{name}: changed while it was read (the worker had given its events up to line "
            f"{last_line:,}); records from there on may repeat or miss events"
        )

    def _from_worker(self, turn: _Turn, stats: ReadStats, before_wait: Callable[[], None]):
        """Yields the worker's entries for the file. Returns None once it is read whole, else
        (events taken, the line of the last, why the rest must be read here: None if there is
        nothing to say)."""
        worker = turn.worker
        assert worker is not None
        if not worker.alive:  # said when it stopped
            return 0, 0, None
        before = _counts(stats)
        # Counted as the entries are taken, as read_source counts: a run that stops part way
        # (stdout closed, Ctrl-C) has read the file's lines up to the last entry it took.
        stats.sources += 1
        lines_before, blank_before = before[0], before[1]
        taken = last_line = 0
        loads = orjson.loads
        why = "the worker reading it stopped"
        while True:
            while not worker.frames.ready():  # a worker held up (a slow disk): at ticks
                before_wait()
                select.select([worker.frames.fd], [], [], IDLE_TICK)
            frame = worker.frames.take()
            if frame is None or frame[1] != turn.task:  # frames come in the order of tasks
                break
            kind = frame[0]
            if kind == "entries":
                for entry in frame[2]:
                    if len(entry) == 3:
                        taken += 1
                        line, item, blank = entry
                        last_line = line
                        stats.lines, stats.blank_lines = lines_before + line, blank_before + blank
                        yield line, loads(item) if type(item) is bytes else item
                    else:
                        settled = Settled(*entry[:5])
                        taken += settled.count
                        last_line = settled.last_line
                        stats.lines = lines_before + last_line
                        stats.blank_lines = blank_before + entry[5]
                        yield settled
                lines, blank_lines, bytes_read = frame[3]
                stats.lines, stats.blank_lines = before[0] + lines, before[1] + blank_lines
                stats.bytes_read = before[3] + bytes_read
            elif kind == "warn":
                assert turn.source.skip_unless_json is not None  # a walk's file only
                turn.source.skip_unless_json(frame[2])
            elif kind == "end":
                _set_counts(stats, tuple(map(sum, zip(before, frame[2], strict=True))))
                if frame[3] is not None:  # as read_source leaves it: set unless it could not open
                    stats.per_source[turn.source.name] = frame[3]
                return None
            elif kind == "hand back":  # an event it cannot pass on: the worker goes on
                return taken, last_line, None
            else:  # "crash"
                why = f"the worker reading it failed ({frame[2]})"
                break
        self._lost(worker)
        return taken, last_line, why

    def _lost(self, worker: _Worker) -> None:
        if worker.alive:
            worker.alive = False
            worker.process.kill()


_Counts = tuple[int, int, int, int, int]
_Listed = tuple[Source, tuple[str, ...]]  # a source and what listing it said


def _listed(
    sources: Iterable[Source],
    said: list[str],
    hold: Callable[[str], None],
    say: Callable[[str], None] | None,
) -> Iterator[_Listed]:
    """Each source with what listing it said (held in ``said``), to be said before it."""
    for source in sources:
        if source.skip_unless_json is hold:  # said as the file is read
            source.skip_unless_json = say
        before = tuple(said)
        said.clear()
        yield source, before


def _version(path: str | None) -> tuple[int, ...] | None:
    """What tells a file rewritten or replaced (a rotation) from the one a worker read."""
    try:
        info = os.stat(path) if path is not None else None
    except OSError:
        return None
    return None if info is None else (info.st_dev, info.st_ino, info.st_mtime_ns, info.st_size)


class _Feed:
    """stdin as this process reads it for the workers. It is also the stream ``read_on`` reads
    on from (``read1``): a read that failed here fails there again, at the same place."""

    def __init__(self, stream, stats: ReadStats):
        self.stream, self.stats = stream, stats
        self.fd: int | None = getattr(stream, "fd", None)  # a pipe or file (see _FdReader)
        self.front: deque[bytes] = deque()  # read already, not yet given
        self.held_bytes = 0
        self.ended = False
        self.error: OSError | None = None

    def ready(self) -> bool:
        """Whether a ``read`` now would not wait."""
        return bool(self.front) or self.ended or self._stream_ready()

    def _stream_ready(self) -> bool:
        return self.fd is None or _selectable(self.fd)

    def wait(self, before_wait: Callable[[], None]) -> None:
        """Until a ``read`` would not wait, calling ``before_wait`` every ``IDLE_TICK`` s."""
        while not self.ready():
            before_wait()
            if self.fd is not None:
                select.select([self.fd], [], [], IDLE_TICK)

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes (b"" at the end, or once a read failed)."""
        if self.front:
            data = self.front.popleft()
            if len(data) > size:
                self.front.appendleft(data[size:])
                data = data[:size]
            self.held_bytes -= len(data)
            return data
        if self.ended:
            return b""
        try:
            data = self.read1(size)
        except OSError as exc:
            self.error, self.ended = exc, True
            return b""
        self.stats.bytes_read += len(data)
        self.ended = not data
        return data

    def read1(self, size: int) -> bytes:
        if self.error is not None:
            raise self.error
        if self.ended:  # a terminal gives its end (Ctrl-D) once, then waits for more
            return b""
        read = getattr(self.stream, "read1", None) or self.stream.read
        return read(size)

    def look_ahead(self, size: int, wait: float | None, before_wait: Callable[[], None]) -> None:
        """Read until ``size`` bytes are held, the end, or no more is ready and ``wait``
        seconds have passed (at least one read; None: no limit)."""
        deadline = None if wait is None else time.monotonic() + wait
        while self.held_bytes < size and not self.ended:
            if self.front and not self._stream_ready():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return
                before_wait()
                if self.fd is not None:
                    tick = IDLE_TICK if left is None else min(left, IDLE_TICK)
                    select.select([self.fd], [], [], tick)
                continue
            if not self.front:
                self.wait(before_wait)
            try:
                data = self.read1(CHUNK_BYTES)
            except OSError as exc:
                self.error, self.ended = exc, True
                return
            self.stats.bytes_read += len(data)
            if not data:
                self.ended = True
            else:
                self.front.append(data)
                self.held_bytes += len(data)

    def peek(self, size: int) -> bytes:
        return b"".join(self.front)[:size] if self.held_bytes <= size else self._first(size)

    def _first(self, size: int) -> bytes:
        parts, held = [], 0
        for data in self.front:
            parts.append(data)
            held += len(data)
            if held >= size:
                break
        return b"".join(parts)[:size]

    def put_back(self, data: list[bytes]) -> None:
        self.front.extendleft(reversed([part for part in data if part]))
        self.held_bytes += sum(map(len, data))

    def held(self) -> list[bytes]:
        """What is read and not yet given, given up (to ``read_on``, which reads on after it)."""
        held = list(self.front)
        self.front.clear()
        self.held_bytes = 0
        return held


CHUNK_BYTES = 1024 * 1024  # read from stdin at once, at most


def _selectable(fd: int) -> bool:
    try:
        return bool(select.select([fd], [], [], 0)[0])
    except (OSError, ValueError):
        return True  # not a pipe select takes: a read will tell


def _lf(data: bytes) -> bytes:
    """Line endings made \\n, as the reading does (see readers._lf)."""
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


def _piece_bytes(workers: list[_Worker]) -> int | None:
    """The size of a piece of stdin: the pieces handed ahead to a worker must fit in its task
    pipe together, so that handing one over never waits on a worker that waits on this
    process. None where a pipe's size cannot be known (not Linux)."""
    sizes = []
    for worker in workers:
        try:
            import fcntl

            sizes.append(fcntl.fcntl(worker.tasks.fileno(), getattr(fcntl, "F_GETPIPE_SZ", 1032)))
        except (ImportError, OSError, ValueError):
            return None
    size = min(sizes) // _AHEAD_PER_WORKER - 4096
    return size if size >= 8192 else None


def _counts(stats: ReadStats) -> _Counts:
    return stats.lines, stats.blank_lines, stats.sources, stats.bytes_read, stats.skipped_files


def _set_counts(stats: ReadStats, counts: tuple) -> None:
    (stats.lines, stats.blank_lines, stats.sources, stats.bytes_read,
     stats.skipped_files) = counts  # fmt: skip


# -- frames ---------------------------------------------------------------------------------


def _put(pipe: IO[bytes], value: Any) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    pipe.write(_HEADER.pack(len(data)) + data)
    pipe.flush()


def _put_piece(pipe: IO[bytes], task: _PieceTask, parts: Iterable[bytes | memoryview]) -> None:
    """A piece's task, then its bytes as a frame of their own (not copied into a pickle)."""
    parts = tuple(parts)
    data = pickle.dumps(task, protocol=pickle.HIGHEST_PROTOCOL)
    pipe.write(_HEADER.pack(len(data)) + data + _HEADER.pack(sum(map(len, parts))))
    for part in parts:
        pipe.write(part)
    pipe.flush()


class _Frames:
    """Frames from a pipe, each read straight into a buffer of its size."""

    def __init__(self, fd: int):
        self.fd = fd
        self._pipe = io.FileIO(fd, "rb", closefd=False)

    def ready(self) -> bool:
        """Whether the pipe has something to read now (else a ``take`` would wait)."""
        return bool(select.select([self.fd], [], [], 0)[0])

    def take(self) -> Any | None:
        """The next frame, or None at the end of the pipe (or a frame cut short)."""
        header = self._exactly(_HEADER.size)
        if header is None:
            return None
        data = self._exactly(_HEADER.unpack(header)[0])
        if data is None:
            return None
        try:
            return pickle.loads(data)
        except (pickle.UnpicklingError, EOFError, ValueError):
            return None

    def take_bytes(self) -> bytes | None:
        """The next frame as the bytes it holds (see _put_piece), or None at the end."""
        header = self._exactly(_HEADER.size)
        data = None if header is None else self._exactly(_HEADER.unpack(header)[0])
        return None if data is None else bytes(data)

    def _exactly(self, size: int) -> bytearray | None:
        data = bytearray(size)
        view = memoryview(data)
        held = 0
        while held < size:
            try:
                got = self._pipe.readinto(view[held:])
            except OSError:
                return None
            if not got:
                return None
            held += got
        return data


def _widen(fd: int) -> None:
    try:
        import fcntl  # not on Windows, where no worker starts

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), _PIPE_BYTES)
    except (ImportError, OSError):
        pass


# -- the worker -----------------------------------------------------------------------------


def _work(tasks: BinaryIO, frames: Any) -> None:  # frames: a _Spool, or any binary stream
    incoming = _Frames(tasks.fileno())
    sieve = incoming.take()
    if not isinstance(sieve, Sieve):
        return
    first_sight = FirstSight(sieve.mapped)
    while True:
        task = incoming.take()
        if task is None:
            return
        try:
            if type(task) is _PieceTask:
                data = incoming.take_bytes()
                if data is None:
                    return
                _read_piece(frames, first_sight, sieve.records, data, *task)
            else:
                _read_one(frames, first_sight, sieve.records, *task)
        except BrokenPipeError:
            return
        except BaseException as exc:  # said to the main process, which reads the file itself
            text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            _put(frames, ("crash", task[0], text))
            return


def _read_one(frames, first_sight, with_records, index, name, path, size, max_line_bytes, walked):
    stats = ReadStats()
    source = Source(name, lambda: open(path, "rb"), size, max_line_bytes)
    if walked:
        source.skip_unless_json = lambda text: _put(frames, ("warn", index, text))
    out = _Entries(frames, index, name, stats, SkippedRecords() if with_records else None)
    judge = first_sight.judge
    for line, item in read_source(source, stats):
        # Events go on as read (the main process drops a dead letter's _retently field, where
        # a run in one process does): the first sight looks at type and name only.
        if type(item) is dict and (judged := judge(item.get("type"), item.get("event"))):
            out.settle(line, message_id_of(item), judged)
        elif not out.add(line, item):
            out.send()
            _put(frames, ("hand back", index))
            return
    out.send()
    counts = (stats.lines, stats.blank_lines, stats.sources, stats.bytes_read, stats.skipped_files)
    _put(frames, ("end", index, counts, stats.per_source.get(name)))


def _read_piece(frames, first_sight, with_records, data, index, name, first, max_line_bytes):
    """A piece of stdin, each line read alone. At a line it may not read alone, it hands back
    (that line, entries of it given already, blank lines before it), for the main process to
    read on from there."""
    stats = ReadStats()
    out = _Entries(frames, index, name, stats, SkippedRecords() if with_records else None)
    judge = first_sight.judge
    line, given = 0, 0  # the line of the last entry, and its entries so far
    try:
        for number, item in read_lines_alone(data, first, max_line_bytes, stats):
            if number != line:
                line, given = number, 0
            if type(item) is dict and (judged := judge(item.get("type"), item.get("event"))):
                out.settle(number, message_id_of(item), judged)
            elif not out.add(number, item):
                raise NotAlone(number)
            given += 1
    except NotAlone as odd:
        out.send()
        _put(frames, ("hand back", index, (odd.line, given if odd.line == line else 0,
                                           stats.blank_lines)))  # fmt: skip
        return
    out.send()
    _put(frames, ("end", index, (stats.lines, stats.blank_lines), None))


class _Entries:
    """A worker's entries for one file, sent in frames. On the way, an event is the JSON of
    it (cheaper to write and read back than a pickle), a ``BadInput`` is itself, and a
    stretch of settled events is a tuple of ``Settled``'s fields. Each entry ends with the
    blank lines read before it: a run that stops part way through a frame counts those."""

    def __init__(self, frames, index: int, name: str, stats: ReadStats, writer):
        self.frames, self.index, self.name = frames, index, name
        self.stats, self.writer = stats, writer
        self.entries: list[tuple] = []
        self.run: list | None = None  # the fields of the Settled being gathered
        self.parts: list[bytes] = []  # its records
        self.held = 0

    def add(self, line: int, item: dict | BadInput) -> bool:
        """False for an event that cannot go as JSON (a lone surrogate, deep nesting): the
        main process must then read the file itself from there, as it reads any."""
        if self.run is not None:
            self._end_run()
        entry: dict | BadInput | bytes = item
        if type(item) is dict:
            try:
                entry = orjson.dumps(item)
            except orjson.JSONEncodeError:
                return False
        self.entries.append((line, entry, self.stats.blank_lines))
        if len(self.entries) >= _FRAME_ENTRIES:
            self.send()
        return True

    def settle(self, line: int, message_id: str | None, judged: Judged) -> None:
        run = self.run
        if run is None:
            run = self.run = [0, line, {}, [], b"", 0]
        run[0] += 1
        run[1] = line
        run[5] = self.stats.blank_lines
        reasons = run[2]
        reason = judged.reason
        reasons[reason] = reasons.get(reason, 0) + 1
        if judged.hint is not None and judged.event is not None:
            run[3].append((judged.event, judged.hint))
        if self.writer is not None:
            record = self.writer.judged_record(self.name, line, message_id, judged)
            self.parts.append(record)
            self.held += len(record)
            if self.held >= _FRAME_BYTES:
                self.send()
        elif run[0] >= _FRAME_ENTRIES:
            self.send()

    def send(self) -> None:
        if self.run is not None:
            self._end_run()
        if self.entries:
            stats = self.stats
            seen = (stats.lines, stats.blank_lines, stats.bytes_read)
            _put(self.frames, ("entries", self.index, self.entries, seen))
            self.entries = []
        self.held = 0

    def _end_run(self) -> None:
        run = self.run
        assert run is not None
        run[4] = b"".join(self.parts)
        self.entries.append(tuple(run))
        self.run, self.parts = None, []


class _Spool:
    """A worker's way out: frames are handed to a thread that writes them to the pipe, so the
    worker reads on while the main process is still taking an earlier file's frames (from
    another worker). What the pipe does not take yet waits in memory, up to ``_HELD_BYTES``,
    then in an unnamed temporary file (gone with the process, however it ends), up to
    ``_SPILLED_BYTES``; past that, the worker waits. A write after the pipe broke raises
    ``BrokenPipeError``, as a write to the pipe itself would."""

    def __init__(self, pipe: BinaryIO):
        self._pipe = pipe
        self._held: deque[bytes] = deque()
        self._held_bytes = 0
        self._spill: IO[bytes] | None = None
        self._spilled = 0  # bytes written to the spill file
        self._taken = 0  # of those, bytes written on to the pipe
        self._closing = False
        self._broken = False
        self._spill_failed = False
        self._turn = threading.Condition()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def write(self, data: bytes) -> None:
        size = len(data)
        with self._turn:
            while True:
                if self._broken:
                    raise BrokenPipeError
                if not self._spilled and (not self._held or self._held_bytes + size <= _HELD_BYTES):
                    self._held.append(data)
                    self._held_bytes += size
                    break
                if self._spill_room(size):
                    assert self._spill is not None
                    try:
                        _write_fully(self._spill.fileno(), data, self._spilled)
                    except OSError:  # a full disk: what is in the file goes out, then memory
                        self._spill_failed = True
                        continue
                    self._spilled += size
                    break
                self._turn.wait()
            self._turn.notify_all()

    def flush(self) -> None:
        return None

    def close(self) -> None:
        """Everything written goes through the pipe (unless it broke) before this returns."""
        with self._turn:
            self._closing = True
            self._turn.notify_all()
        self._thread.join()
        if self._spill is not None:
            self._spill.close()

    def _spill_room(self, size: int) -> bool:
        """Whether the temporary file takes ``size`` more bytes now (made on first need)."""
        if self._spill_failed:
            return False
        if self._spill is None:
            try:
                self._spill = tempfile.TemporaryFile(prefix="retently-")
            except OSError:  # nowhere to spill: the worker waits for the pipe instead
                self._spill_failed = True
                return False
        waiting = self._spilled - self._taken
        return not waiting or waiting + size <= _SPILLED_BYTES

    def _drain(self) -> None:
        while True:
            with self._turn:
                self._turn.wait_for(
                    lambda: self._held or self._spilled > self._taken or self._closing
                )
                if self._held:
                    data = self._held.popleft()
                    self._held_bytes -= len(data)
                elif self._spilled > self._taken:
                    assert self._spill is not None
                    size = min(self._spilled - self._taken, _PIPE_BYTES)
                    try:
                        data = os.pread(self._spill.fileno(), size, self._taken)
                        if not data:
                            raise OSError(errno.EIO, "the temporary file came back short")
                    except OSError:  # frames lost on the way: nothing more may follow them
                        self._broken = True
                        self._turn.notify_all()
                        _close_quietly(self._pipe)
                        return
                    self._taken += len(data)
                    if self._taken == self._spilled:  # all out: the file starts again
                        self._spilled = self._taken = 0
                        self._spill.truncate(0)
                else:
                    return
                self._turn.notify_all()
            try:
                self._pipe.write(data)
                self._pipe.flush()
            except OSError:
                with self._turn:
                    self._broken = True
                    self._turn.notify_all()
                return


def _write_fully(fd: int, data: bytes, offset: int) -> None:
    """All of ``data`` at ``offset``, or ``OSError``: a disk that fills mid-write takes part."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        if written == 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        view = view[written:]
        offset += written


def _close_quietly(pipe: BinaryIO) -> None:
    try:
        pipe.close()
    except OSError:
        pass


_NICER = 5  # how much less of the processor a worker asks for than the main process


def _yield_to_the_main_process() -> None:
    """The run goes at the main process's pace; a worker only reads ahead of it. Where the
    processes outnumber the free cores, the main process should win each contest for one.
    A worker is in its own session, so on Linux in its own autogroup, whose niceness is what
    the scheduler weighs against the main process's group: both are set."""
    try:
        os.nice(_NICER)
    except OSError:
        pass
    try:
        if os.getsid(0) != os.getpid():
            return  # run by hand: the autogroup is the caller's, a terminal's whole session
        with open("/proc/self/autogroup", "w") as group:
            group.write(str(_NICER))
    except OSError:  # not Linux, or autogroups off: nice alone does it
        pass


def main() -> None:
    # A worker's reading thread (inflating) and its spool's writing thread need the GIL back
    # after each system call: frames a worker had made waited up to the default 5 ms.
    sys.setswitchinterval(SWITCH_INTERVAL)
    _yield_to_the_main_process()
    out = _Spool(sys.stdout.buffer)
    try:
        _work(sys.stdin.buffer, out)
    finally:
        out.close()


if __name__ == "__main__":  # run as a worker: take the classes the tasks were pickled with
    from retently_cli import fanout

    fanout.main()
