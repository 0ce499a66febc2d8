"""A progress line on stderr during a send: events read, sent, failed, rate and ETA."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeRemainingColumn

from retently_cli.readers import ReadStats
from retently_cli.report import Report

_EVERY = 0.1  # seconds between redraws of the description


class SendProgress:
    """Only for a terminal; ``update`` is cheap enough to call per batch."""

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
        columns = [SpinnerColumn(), TextColumn("{task.description}")]
        if total_bytes() is not None:
            columns += [BarColumn(), TextColumn("{task.percentage:>3.0f}%"), TimeRemainingColumn()]
        self._progress = Progress(*columns, console=console, transient=True)
        self._task = self._progress.add_task("starting", total=total_bytes() or None)
        self._started = self._last = time.monotonic()

    def __enter__(self) -> SendProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.stop()

    def update(self) -> None:
        now = time.monotonic()
        if now - self._last < _EVERY:
            return
        self._last = now
        sent = self.report.sent
        rate = sent / (now - self._started) if now > self._started else 0.0
        self._progress.update(
            self._task,
            total=self.total_bytes() or None,
            completed=self.stats.bytes_read,
            description=(
                f"read {self.stats.lines:,} lines · sent {sent:,} · "
                f"failed {self.report.failed:,} · {rate:,.1f} surveys/s"
            ),
        )
