"""Where a send writes: stdout, the ``--report`` file and the ``--failed`` file.

A write that fails (the reader of a pipe went away, a full disk, a file-size limit) must not
abandon the surveys in flight: the destination is dropped, the failure remembered and the run
told to stop reading; it then still waits for its requests, settles them in the ledger and
prints its summary. Output paths are checked against the inputs and the ledger before anything
is opened for writing, so no run destroys what it is about to read.
"""

from __future__ import annotations

import os
import select
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from retently_cli.interrupts import STUCK, Stalled

if TYPE_CHECKING:
    from retently_cli.interrupts import Interrupts


class Output:
    """A binary stream that never raises on write: the first failure is kept in ``error``
    and reported through ``on_failure``; later writes are dropped.

    Writes are gathered and handed on in batches (``BATCH_BYTES``, or whatever came within
    ``BATCH_SECONDS``), and on ``flush``: one system call per record cost a fifth of a dry
    run where stdout is unbuffered (``PYTHONUNBUFFERED``, common in containers), and a reader
    at the end of a pipe still sees records as they come. So a failed write shows at the next
    batch, not at the very record; the run then stops reading as before. The files a run
    opens itself are unbuffered (``buffering=0``): a write given up leaves nothing behind that
    closing the file would try to write again (into a pipe nobody reads: ``--report
    /dev/stdout``).
    """

    BATCH_BYTES = 1 << 16
    BATCH_SECONDS = 0.2
    STALLED_AFTER = STUCK  # seconds a write may wait once the run is stopping

    def __init__(self, name: str, stream, on_failure: Callable[[Output], None] = lambda o: None):
        self.name = name
        self.stream = stream
        self.error: OSError | None = None
        self.on_failure = on_failure
        # The run's: once a signal came, a write that waits ``STALLED_AFTER`` seconds
        # (nothing reads the pipe) is given up, so that the run still ends.
        self.interrupts: Interrupts | None = None
        self._pending: list[bytes] = []
        self._size = 0
        self._since = time.monotonic()

    def write(self, data: bytes) -> None:
        if self.error is None:
            self._pending.append(data)
            self._size += len(data)
            if (
                self._size >= self.BATCH_BYTES
                or time.monotonic() - self._since >= self.BATCH_SECONDS
            ):
                self.flush()

    def flush(self) -> None:
        """Hand on what is gathered, and flush the stream."""
        self._since = time.monotonic()
        if self.error is not None:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        self._size = 0
        interrupts = self.interrupts
        try:
            if interrupts is None:
                _write_all(self.stream, data)
            elif interrupts.count:
                write_in_time(self.stream, data, self.STALLED_AFTER, interrupts)
            else:
                _write_all(self.stream, data, interrupts)
            self.stream.flush()
        except (OSError, ValueError) as exc:
            self._failed(exc)
        except KeyboardInterrupt:  # raised in a write that stopped moving (see Interrupts)
            self._failed(Stalled())
            if interrupts is None:
                raise
            interrupts.again()  # raised at the next check: this event's records are all made
        finally:
            if interrupts is not None:
                interrupts.still()

    def close(self) -> None:
        self.flush()
        if self.stream is sys.stdout.buffer:
            return
        try:
            self.stream.close()
        except (OSError, ValueError) as exc:
            if self.error is None:
                self._failed(exc)

    def describe_error(self) -> str:
        exc = self.error
        if isinstance(exc, BrokenPipeError) and self.name == "stdout":
            return "stdout was closed by the program reading it"
        if isinstance(exc, Stalled):
            return (
                f"{self.name} was not being read when the run was stopped: what came after "
                "is not written there, and its last record may be cut short"
            )
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return f"cannot write {self.name}: {reason}"

    def _failed(self, exc: Exception) -> None:
        self.error = exc if isinstance(exc, OSError) else OSError(str(exc))
        self.on_failure(self)


class ReplacingOutput(Output):
    """A file that is also an input (``--failed F`` fed back as ``F``): written beside it and
    moved over it at the end, and only once the run has read the old one to the end; otherwise
    the old file stays and the new one is kept beside it."""

    def __init__(self, path: Path, on_failure: Callable[[Output], None] = lambda o: None):
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".new", dir=path.parent)
        super().__init__(str(path), os.fdopen(fd, "wb", buffering=0), on_failure)
        self.path, self.temp = path, Path(temp)

    def finish(self, input_read: bool) -> str | None:
        """Closes and moves into place; a sentence for the user when the old file is kept."""
        self.close()
        if input_read and self.error is None:
            os.replace(self.temp, self.path)
            return None
        kept = self.path.with_name(self.path.name + ".new")
        os.replace(self.temp, kept)
        return (
            f"{self.path} holds events this run did not settle (not read to the end, filtered, "
            f"a dry-run, or malformed), so it is left as it was; this run's entries are in {kept}"
        )


@dataclass
class PathCheck:
    """What is wrong (refused, exit 2) or worth a word (warned) about the output paths."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    replaced: set[str] = field(default_factory=set)  # output options written beside, then moved


def check_output_paths(
    outputs: dict[str, str | None],
    inputs: list[str],
    folders: list[str],
    ledger: Path | None,
) -> PathCheck:
    """``outputs`` maps an option (``--report``) to its path. An output that is also an input
    is refused, except ``--failed``, which is replaced at the end (the retry workflow); one
    that is the ledger, or the same file as another output, is refused; one inside an input
    folder is warned about (a later run over that folder reads it)."""
    check = PathCheck()
    input_ids = {_identity(Path(p)): p for p in inputs if p != "-"}
    if "-" in inputs:  # stdin redirected from a file (`< events.ndjson`)
        try:
            info = os.fstat(0)
            input_ids[("inode", info.st_dev, info.st_ino)] = "stdin"
        except OSError:
            pass
    seen: dict[object, str] = {}
    for option, raw in outputs.items():
        if raw is None or raw == "-":
            continue
        path = Path(raw)
        ident = _identity(path)
        if ledger is not None and ident == _identity(ledger):
            check.problems.append(f"{option} {raw}: that is the ledger; write it elsewhere")
            continue
        if ident in seen:
            check.problems.append(f"{option} {raw}: {seen[ident]} writes the same file")
            continue
        seen[ident] = option
        if ident in input_ids:
            if option == "--failed":
                check.replaced.add(option)
            else:
                check.problems.append(
                    f"{option} {raw}: it is also an input ({input_ids[ident]}); "
                    "writing it would destroy it before it is read"
                )
            continue
        parent = path.resolve().parent
        for folder in folders:
            if parent.is_relative_to(Path(folder).resolve()):
                check.warnings.append(
                    f"{option} {raw} is inside the input folder {folder}: a later run over "
                    "that folder reads it (its records are recognised and not surveyed)"
                )
                break
    return check


def write_in_time(stream, data: bytes, seconds: float, interrupts: Interrupts | None = None):
    """``data`` written whole to ``stream`` (binary, or text: then as its encoding says), in
    pieces a pipe takes at once, each within ``seconds`` of the last; else ``Stalled``.
    ``interrupts`` hears when each piece went out (``Interrupts.moved``)."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (a test's): it does not wait
        fd = None
    if fd is None or not hasattr(select, "poll"):  # (Windows has no poll)
        _write_all(stream, data, interrupts)
        return
    _moving(interrupts)
    stream.flush()
    ready = select.poll()  # not select(): it refuses a descriptor past 1023
    ready.register(fd, select.POLLOUT)
    view = memoryview(data)
    while view:
        if not ready.poll(seconds * 1000):
            raise Stalled()
        view = view[os.write(fd, view[: select.PIPE_BUF]) :]
        _moving(interrupts)


_PIECE = 16 * 1024  # bytes: a write watched by the run's Interrupts shows it moves this often


def _write_all(stream, data: bytes, interrupts: Interrupts | None = None) -> None:
    """``data`` written whole: a raw (unbuffered) stream may take only part of it. With
    ``interrupts``, in pieces, each noted there as it goes out: a slow reader is not taken
    for one that stopped."""
    view = memoryview(data)
    piece = len(view) if interrupts is None else _PIECE
    while view:
        _moving(interrupts)
        written = stream.write(view[:piece])
        if written is None:  # a stream that takes everything (or tells nothing)
            written = min(piece, len(view))
        view = view[written:]


def _moving(interrupts: Interrupts | None) -> None:
    if interrupts is not None:
        interrupts.moved()


def same_file(name: str, path: str) -> bool:
    """Whether the input ``name`` (``-`` for stdin) is the file at ``path``."""
    if name == "-":
        try:
            info, other = os.fstat(0), os.stat(path)
        except OSError:
            return False
        return (info.st_dev, info.st_ino) == (other.st_dev, other.st_ino)
    return _identity(Path(name)) == _identity(Path(path))


def _identity(path: Path):
    """The file itself where it exists (a symlink or another spelling is the same file),
    else its resolved path."""
    try:
        info = path.stat()
        return ("inode", info.st_dev, info.st_ino)
    except OSError:
        return ("path", str(path.resolve()))
