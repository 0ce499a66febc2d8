"""Shared helpers for the benchmark scripts (stdlib only).

- ``run_timed(cmd, stdout=..., shell=False)`` runs a command and returns
  ``(seconds, peak_rss_bytes, returncode)``.
- ``ensure_export(events, seed=1, files=10)`` returns a synthetic Segment S3
  export under ``benchmarks/data/export-<events>``, generating it with
  make_export.py only when it is missing or was made with other parameters.
- ``list_gz_files(root)`` lists an export's ``.gz`` files, sorted.

Peak RSS: the child's own ``os.wait4`` rusage is the primary figure (exact,
kernel-recorded high-water mark for that one child, and on Linux it also
covers descendants it reaped, e.g. the members of a ``shell=True`` pipeline:
the maximum of them, not their sum).  A thread also polls
``/proc/<pid>/status`` VmHWM while the child runs as a cross-check (Linux
only); the larger of the two is returned.  ``resource.getrusage
(RUSAGE_CHILDREN)`` is not used: it is a max over all children ever reaped,
so it cannot be attributed to one run.  ``python -m retently_cli`` is a
single process, so its figure is the CLI's peak; if the CLI ever starts
worker processes, their memory is NOT added up by this figure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
DATA_DIR = os.path.join(BENCH_DIR, "data")

MB = 1_000_000  # decimal megabytes throughout the benchmark output


class _VmHWMPoller(threading.Thread):
    """Poll the peak resident set (VmHWM) of a process and of its descendants (worker
    processes) until stopped. ``peak_bytes`` is the sum of each one's peak: at least the most
    they ever held at once, so a run split over processes is not made to look smaller."""

    def __init__(self, pid: int, interval: float = 0.005):
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.peaks: dict[int, int] = {}
        self._stop_event = threading.Event()

    @property
    def peak_bytes(self) -> int:
        return sum(self.peaks.values())

    @staticmethod
    def _read(pid: int) -> int | None:
        try:
            with open(f"/proc/{pid}/status", "rb") as f:
                for line in f:
                    if line.startswith(b"VmHWM:"):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            return None
        return None  # zombie: no memory lines any more

    @staticmethod
    def _children(pid: int) -> list[int]:
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                return [int(child) for child in f.read().split()]
        except (OSError, ValueError):
            return []

    def _look(self, pids) -> None:
        for pid in pids:
            v = self._read(pid)
            if v is not None and v > self.peaks.get(pid, 0):
                self.peaks[pid] = v

    def run(self) -> None:
        polls = 0
        tree = [self.pid]
        while not self._stop_event.is_set():
            if polls % 10 == 0:  # the process tree, every tenth look
                tree, found = [self.pid], [self.pid]
                while found:
                    found = [child for pid in found for child in self._children(pid)]
                    tree += found
            self._look(tree)
            polls += 1
            self._stop_event.wait(self.interval)

    def stop(self) -> int:
        self._look([self.pid])  # last look (child is a zombie or still exiting)
        self._stop_event.set()
        self.join()
        return self.peak_bytes


def _maxrss_bytes(ru) -> int:
    # Linux reports ru_maxrss in kilobytes, macOS in bytes.
    return ru.ru_maxrss if sys.platform == "darwin" else ru.ru_maxrss * 1024


def run_timed(
    cmd,
    stdout=subprocess.DEVNULL,
    shell: bool = False,
    *,
    stderr=None,
    stdin=subprocess.DEVNULL,
    cwd=None,
    env=None,
) -> tuple[float, int, int]:
    """Run ``cmd`` to completion; return (wall seconds, peak RSS bytes, return code).

    ``stdout``/``stderr``/``stdin`` are passed to subprocess.Popen (a file
    object, a file descriptor, ``subprocess.DEVNULL`` or ``None`` to inherit).
    Do not pass ``subprocess.PIPE`` for large outputs: nothing reads it while
    the child runs.  ``cmd`` is a list, or a string with ``shell=True``.
    """
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=stdout, stderr=stderr, stdin=stdin, shell=shell, cwd=cwd, env=env
    )
    poller = None
    if sys.platform.startswith("linux"):
        poller = _VmHWMPoller(proc.pid)
        poller.start()
    try:
        if poller is not None and hasattr(os, "waitid"):
            # Wait for exit WITHOUT reaping, so the pid cannot be reused while
            # the poller takes its last look; then reap with wait4 for rusage.
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
            seconds = time.perf_counter() - t0
            polled = poller.stop()
            poller = None
            _, status, ru = os.wait4(proc.pid, 0)
        else:
            _, status, ru = os.wait4(proc.pid, 0)
            seconds = time.perf_counter() - t0
            polled = 0
    except BaseException:
        if poller is not None:
            poller.stop()
        proc.kill()
        proc.wait()
        raise
    proc.returncode = os.waitstatus_to_exitcode(status)
    # VmHWM, read after the child exited but before it was reaped, is its exact peak since
    # exec. ru_maxrss is only a fallback: on Linux a child starts with its parent's high-water
    # mark at fork, so a big parent (the fake server holding 100,000s of surveys) inflates it.
    return seconds, polled or _maxrss_bytes(ru), proc.returncode


def best_of(repeat: int, cmd, **kwargs) -> tuple[float, int, int, list[float]]:
    """run_timed ``repeat`` times: (best seconds, max peak RSS, last non-zero or 0 rc, all times).

    ``stdout``/``stderr`` in kwargs may be callables returning a fresh target
    for each run (e.g. to truncate an output file before every repeat).
    """
    times, peak, rc = [], 0, 0
    for _ in range(max(1, repeat)):
        kw = {k: (v() if callable(v) else v) for k, v in kwargs.items()}
        try:
            s, p, r = run_timed(cmd, **kw)
        finally:
            for k in ("stdout", "stderr"):  # close only what a callable opened for us
                if callable(kwargs.get(k)) and hasattr(kw[k], "close"):
                    kw[k].close()
        times.append(s)
        peak = max(peak, p)
        if r != 0:
            rc = r
    return min(times), peak, rc, times


def list_gz_files(root: str) -> list[str]:
    """All ``*.gz`` files under root (recursively), sorted by path."""
    out = []
    for dirpath, _dirs, names in os.walk(root):
        for n in names:
            if n.endswith(".gz"):
                out.append(os.path.join(dirpath, n))
    return sorted(out)


def export_paths(events: int, data_dir: str = DATA_DIR) -> tuple[str, str]:
    """(export directory, marker file) for an export of ``events`` events."""
    return (
        os.path.join(data_dir, f"export-{events}"),
        os.path.join(data_dir, f"export-{events}.json"),
    )


def ensure_export(
    events: int, seed: int = 1, files: int = 10, data_dir: str = DATA_DIR, quiet: bool = False
) -> tuple[str, dict]:
    """Return (export dir, metadata), generating the export only if needed.

    The marker file lives NEXT TO the export (``export-<N>.json``), not inside
    it, so the CLI never sees it as an input.  The export is reused when the
    marker records the same events/seed/files and all listed files exist.
    """
    export_dir, marker = export_paths(events, data_dir)
    try:
        with open(marker, encoding="utf-8") as f:
            meta = json.load(f)
        if (
            meta.get("events") == events
            and meta.get("seed") == seed
            and meta.get("files") == files
            and all(os.path.isfile(os.path.join(export_dir, p)) for p in meta["paths"])
            and len(list_gz_files(export_dir)) == len(meta["paths"])
        ):
            if not quiet:
                print(
                    f"reusing {os.path.relpath(export_dir)} (events={events}, seed={seed}, "
                    f"files={files})",
                    file=sys.stderr,
                )
            return export_dir, meta
    except (OSError, ValueError, KeyError, TypeError):
        pass

    sys.path.insert(0, BENCH_DIR)
    try:
        import make_export  # noqa: PLC0415 (local script, imported lazily)
    finally:
        sys.path.remove(BENCH_DIR)
    if not quiet:
        print(
            f"generating {os.path.relpath(export_dir)} (events={events}, seed={seed}, "
            f"files={files}) ...",
            file=sys.stderr,
        )
    os.makedirs(data_dir, exist_ok=True)
    tmp = export_dir + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    meta = make_export.generate(tmp, events=events, files=files, seed=seed)
    if os.path.exists(marker):
        os.remove(marker)
    shutil.rmtree(export_dir, ignore_errors=True)
    os.rename(tmp, export_dir)
    with open(marker, "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    if not quiet:
        print(
            f"  {meta['events']} events, {meta['avg_bytes_per_event']:.1f} bytes/event, "
            f"{meta['compressed_bytes'] / MB:.1f} MB gzipped, {meta['seconds']:.1f}s",
            file=sys.stderr,
        )
    return export_dir, meta


def add_export_args(ap) -> None:
    """--events, --seed and --files: which synthetic export (ensure_export) a benchmark uses."""
    ap.add_argument("--events", type=int, default=1_000_000, help="export size (default 1000000)")
    ap.add_argument("--seed", type=int, default=1, help="export seed (default 1)")
    ap.add_argument("--files", type=int, default=10, help="export .gz files (default 10)")


def peak_rss_mb(nbytes: int) -> float:
    return nbytes / MB
