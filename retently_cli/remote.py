"""Inputs in object storage (``s3://bucket/prefix``, or any fsspec URL), read through fsspec.

fsspec and its S3 implementation s3fs are an optional extra; without them a URL fails with one
line naming the extra. Credentials and the endpoint come from the standard AWS chain
(environment, profile, ``AWS_ENDPOINT_URL``), never from retently's config. Folders are listed
one at a time, in name order, so reading starts before a large export is listed and memory does
not grow with it; objects are read in blocks, never downloaded whole.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from dataclasses import dataclass

EXTRA = "pip install 'retently-cli[s3]'"
BLOCK_SIZE = 8 << 20

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


class RemoteError(Exception):
    """A URL that cannot be read at all (no extra, no bucket, access denied): exit 2."""


def is_url(text: str) -> bool:
    return bool(_URL.match(text))


def local_path(url: str) -> str | None:
    """The path a ``file://`` URL names, read as any local path is; None for other URLs."""
    if url.lower().startswith("file://"):
        return url[len("file://") :] or "/"
    return None


@dataclass
class Entry:
    """One listed name: a folder, or an object with its size."""

    path: str
    name: str
    is_dir: bool
    size: int | None
    error: str | None = None
    details: dict | None = None  # as listed, for the filesystem's file object


class Location:
    """A URL's filesystem and its path in it, checked to exist and to be readable."""

    def __init__(self, url: str):
        self.url = url
        try:
            import fsspec
            from fsspec.spec import AbstractBufferedFile
        except ImportError:
            raise RemoteError(f"{url}: reading URLs needs the s3 extra: {EXTRA}") from None
        try:
            # a filesystem of its own: credentials and endpoint are read afresh from the chain
            self.fs, self.root = fsspec.core.url_to_fs(url, skip_instance_cache=True)
        except ImportError as exc:  # fsspec is there, the protocol's implementation is not
            raise RemoteError(f"{url}: {_first_line(exc)} (for s3://: {EXTRA})") from None
        except (ValueError, TypeError) as exc:
            raise RemoteError(f"{url}: not a URL fsspec can read ({_first_line(exc)})") from None
        self.root = self.root.rstrip("/") or self.root
        info = self._info()
        self.is_dir = info.get("type") == "directory"
        self.size = None if self.is_dir else info.get("size")
        self.details = None if self.is_dir else info
        self._top = self._checked(self._list, self.root) if self.is_dir else []
        self._takes_size = "size" in inspect.signature(self.fs._open).parameters
        self._buffered = AbstractBufferedFile

    def _info(self) -> dict:
        return self._checked(self.fs.info, self.root)

    def _checked(self, call, path: str):
        """``call(path)``, its failures said in one line for the user."""
        try:
            return call(path)
        except FileNotFoundError:
            raise RemoteError(f"{self.url}: no such bucket, prefix or object") from None
        except PermissionError:
            raise RemoteError(f"{self.url}: access denied") from None
        except Exception as exc:
            raise RemoteError(f"{self.url}: cannot read it ({_describe(exc)})") from None

    def name_of(self, path: str) -> str:
        """How a listed path is shown in records: a URL with the scheme given."""
        return self.fs.unstrip_protocol(path)

    def _list(self, folder: str) -> list[Entry]:
        """A folder's entries in name order. The filesystem's listings cache is dropped after,
        so that a walk over millions of objects holds one folder at a time."""
        try:
            listed = self.fs.ls(folder, detail=True)
        except FileNotFoundError:
            return []  # an empty prefix, or gone since its parent was listed
        finally:
            self.fs.invalidate_cache(folder)
        entries = []
        for item in listed:
            path = item["name"].rstrip("/")
            if path == folder.rstrip("/"):
                continue  # some stores list a folder's own marker object
            name = path.rsplit("/", 1)[-1]
            is_dir = item.get("type") == "directory"
            size = None if is_dir else item.get("size")
            entries.append(Entry(path, name, is_dir, size, details=None if is_dir else item))
        entries.sort(key=lambda entry: entry.name)
        return entries

    def walk(self, selection, folder: str | None = None, below: str = "") -> Iterator[Entry]:
        """The objects under ``folder`` (the root) in key order, as ``selection`` keeps them;
        each folder is listed when the walk reaches it. A folder that cannot be listed is given
        as an entry with its ``error``, to be reported as unreadable."""
        if folder is None:
            entries = self._top
        else:
            try:
                entries = self._list(folder)
            except Exception as exc:
                yield Entry(folder, "", False, None, f"cannot list it: {_describe(exc)}")
                return
        for entry in entries:
            relative = f"{below}{entry.name}"
            if entry.is_dir:
                if selection.keeps_folder(entry.name):
                    yield from self.walk(selection, entry.path, relative + "/")
            elif selection.keeps_file(relative):
                yield entry

    def open(self, entry: Entry):
        name = self.name_of(entry.path)
        if entry.error is not None:
            raise OSError(entry.error)
        options = {"block_size": BLOCK_SIZE}
        if entry.size is not None and self._takes_size:
            options["size"] = entry.size  # known from the listing: spares a HEAD per object
        try:
            file = self.fs.open(entry.path, "rb", **options)
            if entry.details and isinstance(file, self._buffered):
                file.details = entry.details  # its ETag too: no HEAD before the first read
            return _Stream(file, name)
        except OSError:
            raise
        except Exception as exc:
            raise OSError(f"cannot open {name}: {_describe(exc)}") from None


class _Stream:
    """A remote object's bytes. Whatever the transport raises while reading (botocore, aiohttp,
    fsspec's own errors) comes out as an OSError, which the reader reports against the object
    before going on to the next."""

    def __init__(self, file, name: str):
        self.file, self.name = file, name

    def read(self, size: int = -1) -> bytes:
        try:
            return self.file.read(size)
        except OSError:
            raise
        except Exception as exc:
            raise OSError(_describe(exc)) from None

    def close(self) -> None:
        try:
            self.file.close()
        except Exception:
            pass


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {_first_line(exc)}" if str(exc) else type(exc).__name__


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
