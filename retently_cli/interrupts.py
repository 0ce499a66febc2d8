"""Ctrl-C, SIGTERM and SIGHUP during a run: noted when they come, acted on where it is safe.

Python's own Ctrl-C raises ``KeyboardInterrupt`` wherever the main thread happens to be.
Inside a lock or a queue (the delivery's, the reader's) that leaves the lock held, and the
run hangs for ever instead of stopping within its grace. So the handler here only counts the
signal, and the main thread calls ``check`` where it holds nothing: between events, and at
every tick of every wait.

If the main thread is blocked where no check is (a write to a stalled pipe), a hang would be
worse: a signal left unheeded for ``STUCK`` seconds is raised where it lands. A second signal
does that, and so does a timer (SIGALRM) that ticks from the first signal on: a container
stopping sends one SIGTERM and then, seconds later, SIGKILL. The same ticks break a write of
the main thread that has stopped moving for ``STUCK`` seconds once a signal came, even after
the signal was acted on (``Stalled``, which the outputs take as their end). A write that is
moving on (a slow reader) is not stuck: the outputs say when each piece went out
(``moved``), and the ticks count from then.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator

# Ctrl-C; a kill or a container stopping; the terminal or ssh session gone (not on Windows).
SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)
STUCK = 1.0  # seconds
_TICK = STUCK / 4


class Stalled(OSError):
    """A write that could not go on while the run was stopping (nothing read the pipe)."""


class Interrupts:
    """The signals of a run, each acted on once by ``check``: the first stops the run, the
    next one leaves at once."""

    def __init__(self, clock=time.monotonic):
        self.count = 0  # signals received
        self.pending = False  # one or more not acted on yet
        self._heeded = 0
        self._unheeded_since: float | None = None
        self._clock = clock
        self._noting = 0  # ``noted`` blocks entered and not left
        self._ticking = False
        # While the main thread writes an output: when its last piece went out (else None).
        self.writing: float | None = None
        self._late = False  # see ``too_late``

    def check(self) -> None:
        """Raises ``KeyboardInterrupt`` for the next signal not acted on yet."""
        if self.pending:
            self._heed()
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def noted(self) -> Iterator[Interrupts]:
        """Meanwhile, the signals are noted here instead of raised where they land (a block
        inside another is part of it: the outer one ends the noting)."""
        if self._noting:
            self._noting += 1
            try:
                yield self
            finally:
                self._noting -= 1
            return
        previous = {signum: signal.signal(signum, self._note) for signum in SIGNALS}
        if _TIMER:
            previous[signal.SIGALRM] = signal.signal(signal.SIGALRM, self._tick)
        self._noting = 1
        try:
            yield self
        finally:
            self._noting = 0
            if self._ticking:
                self._ticking = False
                signal.setitimer(signal.ITIMER_REAL, 0)
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    @contextlib.contextmanager
    def at_once(self) -> Iterator[None]:
        """Meanwhile (a wait for an answer, where nothing is held), a signal is raised where
        it lands, as soon as it comes; one noted before is raised first."""
        previous = {signum: signal.signal(signum, self._raise) for signum in SIGNALS}
        try:
            self.check()  # after the handlers: one just before them is not left waiting
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def too_late(self) -> None:
        """The work is done and settled, only its summary is left: a signal from now on is
        counted (outputs then wait only so long) but never raised."""
        self._late = True
        self.pending, self._unheeded_since = False, None

    def again(self) -> None:
        """A ``KeyboardInterrupt`` raised where it landed (in a write that waited too long)
        was caught there: the next check raises it, where nothing is cut short."""
        if self._late:
            return
        self._heeded -= 1
        self.pending, self._unheeded_since = True, self._clock()

    def moved(self) -> None:
        """An output of the main thread put a piece out (or is about to write)."""
        if threading.get_ident() == _MAIN:  # another thread's writes say nothing of it
            self.writing = self._clock()

    def still(self) -> None:
        """That output is done writing."""
        if threading.get_ident() == _MAIN:
            self.writing = None

    def _raise(self, signum, frame) -> None:
        self.count += 1
        self._heeded = self.count
        raise KeyboardInterrupt

    def _note(self, signum, frame) -> None:
        self.count += 1
        now = self._clock()
        if self._noting and _TIMER and not self._ticking:
            self._ticking = True
            signal.setitimer(signal.ITIMER_REAL, _TICK, _TICK)
        if self._late:
            return
        if not self.pending:
            self.pending, self._unheeded_since = True, now
        elif self._unheeded_since is not None and now - self._unheeded_since >= STUCK:
            self._heed(self.count)  # the signals so far, each a try to get through
            raise KeyboardInterrupt

    def _tick(self, signum, frame) -> None:
        """From the first signal on: raises it where the main thread is, if that thread has
        reached no check for ``STUCK`` seconds, nor moved a write on; breaks a write that has
        stopped moving for as long."""
        now, writing = self._clock(), self.writing
        if self.pending and self._unheeded_since is not None:
            if now - max(self._unheeded_since, writing or 0.0) >= STUCK:
                self._heed(self.count)
                raise KeyboardInterrupt
        elif writing is not None and now - writing >= STUCK:
            raise Stalled()

    def _heed(self, upto: int | None = None) -> None:
        self._heeded = self._heeded + 1 if upto is None else upto
        self.pending = False
        if self._heeded < self.count:  # after the clearing: one arriving meanwhile sets it
            self.pending = True
        self._unheeded_since = self._clock() if self.pending else None


_TIMER = hasattr(signal, "setitimer")  # not on Windows
_MAIN = threading.main_thread().ident
