"""Which inputs a run reads: stdin, files, folders (walked), and URLs in object storage.

Folders are walked as they are reached, so reading starts at once and a large export is never
held as a list. A walk passes over hidden files and folders, the run's own outputs, files that
``--include``/``--exclude`` leave out, and day folders that cannot hold an event of the
``--since/--until`` window (see ``pruning``). A path named on its own is always read.
"""

from __future__ import annotations

import functools
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from retently_cli.pruning import Window, prunable
from retently_cli.readers import MAX_LINE_BYTES, STDIN_NAME, Source, _unlocked, open_pipe
from retently_cli.remote import Entry, Location, is_url, local_path


@dataclass
class Selection:
    """What a walk keeps. ``include``/``exclude`` are globs matched against the path below the
    folder given (``*`` matches across ``/``); ``own_outputs`` are the run's output files."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    own_outputs: tuple[str, ...] = ()
    window: Window | None = None
    pruned_folders: int = 0

    def keeps_folder(self, name: str) -> bool:
        if name.startswith("."):
            return False
        if prunable(name, self.window):
            self.pruned_folders += 1
            return False
        return True

    def keeps_file(self, relative: str) -> bool:
        if relative.rsplit("/", 1)[-1].startswith("."):
            return False
        if self.include and not any(fnmatchcase(relative, glob) for glob in self.include):
            return False
        return not any(fnmatchcase(relative, glob) for glob in self.exclude)

    def output_identities(self) -> set[tuple[int, int]]:
        """The outputs as files, taken when a walk starts (by then a run has opened them)."""
        found = set()
        for path in self.own_outputs:
            try:
                info = os.stat(path)
            except OSError:
                continue
            found.add((info.st_dev, info.st_ino))
        return found


class Inputs:
    """The sources for ``paths``, given as they are listed. URLs are checked when this is made,
    so a missing bucket or a denied access stops the run before anything is sent."""

    def __init__(
        self,
        paths: Iterable[str],
        stdin,
        warn: Callable[[str], None] = lambda text: None,
        max_line_bytes: int = MAX_LINE_BYTES,
        selection: Selection | None = None,
    ):
        self.paths = [local_path(p) or p for p in paths] or [STDIN_NAME]
        self.stdin, self.warn, self.max_line_bytes = stdin, warn, max_line_bytes
        self.selection = selection or Selection()
        self.locations = {p: Location(p) for p in self.paths if is_url(p)}
        self.listed_bytes = 0
        self.unsized = False

    @property
    def pruned_folders(self) -> int:
        return self.selection.pruned_folders

    @property
    def reads_stdin(self) -> bool:
        return STDIN_NAME in self.paths

    def local_files(self) -> list[str]:
        """The local files named on their own (a walk leaves the run's outputs out)."""
        return [
            p for p in self.paths if p != STDIN_NAME and p not in self.locations and not _isdir(p)
        ]

    def local_folders(self) -> list[str]:
        return [p for p in self.paths if p not in self.locations and _isdir(p)]

    def inputs_among(self, paths: Iterable[str | None]) -> list[str]:
        """Those of ``paths`` that are inputs: named on their own, or existing files that a
        walk reads (an output must not be written over them)."""
        named = set(self.local_files())
        return [p for p in paths if p and p != STDIN_NAME and (p in named or self._walks_to(p))]

    def _walks_to(self, path: str) -> bool:
        if not os.path.isfile(path):
            return False
        target = Path(path).resolve()
        for folder in self.local_folders():
            top = Path(folder).resolve()
            if target.is_relative_to(top):
                parts = target.relative_to(top).parts
                if not any(part.startswith(".") for part in parts[:-1]):
                    if self.selection.keeps_file("/".join(parts)):
                        return True
        return False

    def __iter__(self) -> Iterator[Source]:
        for raw in self.paths:
            for source in self._sources(raw):
                if source.size is None:
                    self.unsized = True
                else:
                    self.listed_bytes += source.size
                yield source

    def _sources(self, raw: str) -> Iterator[Source]:
        limit = self.max_line_bytes
        if raw == STDIN_NAME:
            stdin = self.stdin
            yield Source(STDIN_NAME, lambda: _unlocked(stdin), None, limit)
        elif raw in self.locations:
            yield from _remote_sources(self.locations[raw], self.selection, limit, self.warn)
        elif _isdir(raw):
            for file in _walk(Path(raw), self.selection, self.warn):
                source = _file_source(file, limit)
                source.skip_unless_json = self.warn  # a walk passes over what is not events
                yield source
        else:
            yield _file_source(Path(raw), limit)


def expand_paths(
    paths: Iterable[str],
    stdin,
    warn: Callable[[str], None] = lambda text: None,
    max_line_bytes: int = MAX_LINE_BYTES,
    selection: Selection | None = None,
) -> Inputs:
    """Sources for the given paths; folders are walked recursively in a stable order."""
    return Inputs(paths, stdin, warn, max_line_bytes, selection)


def _isdir(path: str) -> bool:
    return path != STDIN_NAME and os.path.isdir(path)


def _remote_sources(
    location: Location, selection: Selection, limit: int, warn: Callable[[str], None]
) -> Iterator[Source]:
    entries: Iterable[Entry]
    if location.is_dir:
        entries = location.walk(selection)
    else:
        entries = [Entry(location.root, "", False, location.size, details=location.details)]
    for entry in entries:
        name = location.name_of(entry.path)
        source = Source(name, functools.partial(location.open, entry), entry.size, limit)
        if location.is_dir:
            source.skip_unless_json = warn
        yield source


def _walk(top: Path, selection: Selection, warn: Callable[[str], None]) -> Iterator[Path]:
    """The files under ``top`` in name order, as ``selection`` keeps them. Symlinked folders
    are followed, each real folder once: a second way into one (a link back up would loop) is
    skipped with a ``warn``; what is not a regular file (a FIFO would block the run for ever)
    is skipped with a ``warn``."""
    seen = {_identity(top)}
    outputs = selection.output_identities()
    for root, dirs, files in os.walk(top, followlinks=True):
        kept = []
        for name in sorted(dirs):
            if not selection.keeps_folder(name):
                continue
            folder = os.path.join(root, name)
            identity = _identity(Path(folder))
            if identity in seen:
                warn(f"{folder}: skipped, a link to a folder that is read already")
                continue
            seen.add(identity)
            kept.append(name)
        dirs[:] = kept
        below = Path(root).relative_to(top).as_posix()
        prefix = "" if below == "." else below + "/"
        for name in sorted(files):
            if not selection.keeps_file(prefix + name):
                continue
            path = Path(root) / name
            try:
                info = path.stat()
            except OSError:
                yield path  # a dangling link: reading it reports it as unreadable
                continue
            if (info.st_dev, info.st_ino) in outputs:
                continue
            if stat.S_ISREG(info.st_mode):
                yield path
            else:
                warn(f"{path}: skipped, not a regular file")


def _identity(path: Path) -> tuple[int, int] | Path:
    try:
        info = path.stat()
    except OSError:
        return path
    return info.st_dev, info.st_ino


def _file_source(path: Path, max_line_bytes: int = MAX_LINE_BYTES) -> Source:
    try:
        info = path.stat()
    except OSError:
        info = None
    opener: Callable[[], Any]
    if info is not None and stat.S_ISFIFO(info.st_mode):
        # A pipe or FIFO (`<(...)`, /dev/stdin) has no size: it is read ahead in a thread,
        # and the run waits for it at ticks (a Ctrl-C is acted on), as for stdin.
        opener, size = (lambda: open_pipe(path)), None
    else:
        opener, size = (lambda: open(path, "rb")), (info.st_size if info is not None else None)
    return Source(_name_of(path), opener, size, max_line_bytes, path=_shared_path(path, info))


def _name_of(path: Path) -> str:
    """A file's name in records and messages. Bytes of a name that are not UTF-8 (a file
    system takes names as they come) show as U+FFFD: JSON cannot carry them as they are."""
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(text).decode("utf-8", "replace")
    return text


def _shared_path(path: Path, info: os.stat_result | None) -> str | None:
    """A path by which another process opens this same regular file (``fanout``), else None:
    a pipe or device is read once, by this process, and a name through this process's own
    descriptors (/dev/stdin, /dev/fd/3) is another file, or none, in a worker."""
    if info is None or not stat.S_ISREG(info.st_mode):
        return None
    real = os.path.realpath(path)
    try:
        return real if os.path.samestat(os.stat(real), info) else None
    except OSError:
        return None
