"""The event keys a run has seen, in a temporary file: ``matching.SeenKeys`` keeps 12 bytes a
key in memory and reads a key back only to compare it with a new one whose hash matches
(the true duplicates, and almost nothing else)."""

from __future__ import annotations

import io
import os
import tempfile

from retently_cli.matching import KeysInMemory


class KeysOnDisk(KeysInMemory):
    """Appended keys, written to an unnamed temporary file a megabyte at a time (gone with the
    process, however it ends). Where no file can be made or written (a full disk), the rest
    is kept in memory."""

    _WRITE_ABOVE = 1 << 20

    def __init__(self):
        super().__init__()  # the keys not written yet; ``_base``: the bytes in the file
        self._file: io.FileIO | None = None
        try:
            self._file = tempfile.TemporaryFile(prefix="retently-keys-", buffering=0)
        except OSError:
            pass
        self._spilling = self._file is not None

    def append(self, key: bytes) -> int:
        where = super().append(key)
        if self._spilling and len(self._data) >= self._WRITE_ABOVE:
            self._write()
        return where

    def read(self, where: int) -> bytes:
        if where >= self._base:
            return super().read(where)
        assert self._file is not None
        fd = self._file.fileno()
        size = int.from_bytes(_pread(fd, self._LENGTH, where), "little")
        return _pread(fd, size, where + self._LENGTH)

    def _write(self) -> None:
        assert self._file is not None
        data = memoryview(self._data)
        try:
            done = 0
            while done < len(data):
                done += os.write(self._file.fileno(), data[done:])
        except OSError:  # the disk is full: what is left stays here (a part written is unread)
            self._spilling = False
            return
        finally:
            data.release()
        self._base += len(self._data)
        self._data = bytearray()


def _pread(fd: int, size: int, where: int) -> bytes:
    parts = []
    while size:
        part = os.pread(fd, size, where)
        if not part:
            raise OSError(f"the temporary file of keys ends early, at byte {where}")
        parts.append(part)
        size -= len(part)
        where += len(part)
    return b"".join(parts)
