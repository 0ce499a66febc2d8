"""A progress line on stderr during a send: events read, sent, failed, rate and ETA."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from rich.console import Console, RenderHook
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeRemainingColumn

from retently_cli.readers import ReadStats
from retently_cli.report import Report

_EVERY = 0.1  # seconds between redraws of the description


class SendProgress:
    """Only for a terminal; ``update`` is cheap enough to call per batch. A console without
    colour (``NO_COLOR``, ``--color never``, a dumb terminal) gets a plain line, redrawn with
    a carriage return: no escape code at all."""

    def __init__(
        self,
        console: Console,
        stats: ReadStats,
        report: Report,
        total_bytes: Callable[[], int | None],
    ):
        """``total_bytes`` is asked at each redraw: the inputs' sizes as listed so far, or None
        when they are not known (stdin)."""
        self.stats, self.report, self.total_bytes = stats, report, total_bytes
        self._line: _PlainLine | _Bar
        if console.color_system is None:
            self._line = _PlainLine(console)
        else:
            self._line = _Bar(console, total_bytes() is not None)
        self._started = self._last = time.monotonic()

    def __enter__(self) -> SendProgress:
        self._line.start()
        return self

    def __exit__(self, *exc) -> None:
        self._line.stop()

    def update(self) -> None:
        now = time.monotonic()
        if now - self._last < _EVERY:
            return
        self._last = now
        sent = self.report.sent
        rate = sent / (now - self._started) if now > self._started else 0.0
        description = (
            f"read {self.stats.lines:,} lines · sent {sent:,} · "
            f"failed {self.report.failed:,} · {rate:,.1f} surveys/s"
        )
        self._line.show(description, self.stats.bytes_read, self.total_bytes() or None)


class _Bar:
    """Rich's progress bar: it moves the cursor to redraw itself."""

    def __init__(self, console: Console, sized: bool):
        columns = [SpinnerColumn(), TextColumn("{task.description}")]
        if sized:
            columns += [BarColumn(), TextColumn("{task.percentage:>3.0f}%"), TimeRemainingColumn()]
        self._progress = Progress(*columns, console=console, transient=True)
        self._task = self._progress.add_task("starting", total=None)

    def start(self) -> None:
        self._progress.start()

    def stop(self) -> None:
        self._progress.stop()

    def show(self, description: str, done: int, total: int | None) -> None:
        self._progress.update(self._task, total=total, completed=done, description=description)


class _PlainLine(RenderHook):
    """One line, rewritten in place after a carriage return and wiped (spaces) before the
    console prints anything else, so table rows and warnings never land on top of it."""

    def __init__(self, console: Console):
        self.console = console
        self._shown = 0  # characters on the terminal's last line
        self._lock = threading.Lock()  # workers may print a warning meanwhile

    def start(self) -> None:
        self.console.push_render_hook(self)

    def stop(self) -> None:
        self.console.pop_render_hook()
        self._wipe()

    def show(self, description: str, done: int, total: int | None) -> None:
        if total:
            description += f" · {min(done / total, 1.0):.0%}"
        text = description[: max(self.console.width - 1, 0)]
        with self._lock:
            self._write("\r" + text.ljust(self._shown))
            self._shown = len(text)

    def process_renderables(self, renderables):
        self._wipe()
        return renderables

    def _wipe(self) -> None:
        with self._lock:
            if self._shown:
                self._write("\r" + " " * self._shown + "\r")
                self._shown = 0

    def _write(self, text: str) -> None:
        self.console.file.write(text)
        self.console.file.flush()
