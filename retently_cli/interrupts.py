"""Ctrl-C, SIGTERM and SIGHUP during a run: noted when they come, acted on where it is safe.

Python's own Ctrl-C raises ``KeyboardInterrupt`` wherever the main thread happens to be.
Inside a lock or a queue (the delivery's, the reader's) that leaves the lock held, and the
run hangs for ever instead of stopping within its grace. So the handler here only counts the
signal, and the main thread calls ``check`` where it holds nothing: between events, and at
every tick of every wait. If the main thread is blocked where no check is (a write to a
stalled pipe), a signal left unheeded for ``STUCK`` seconds is raised where it lands: a hang
would be worse. A second signal does that, and so does a timer (SIGALRM) the first one sets,
as a container stopping sends one SIGTERM and then, seconds later, SIGKILL. A write that is
moving on (a slow reader) is not stuck: the outputs say when their last piece went out
(``writing``), and the timer waits ``STUCK`` from then.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator

# Ctrl-C; a kill or a container stopping; the terminal or ssh session gone (not on Windows).
SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)
STUCK = 1.0  # seconds


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
            previous[signal.SIGALRM] = signal.signal(signal.SIGALRM, self._stuck)
        self._noting = 1
        try:
            yield self
        finally:
            self._noting = 0
            _set_timer(0)
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
        counted (outputs then wait only so long) but never raised, except to break a write
        that has stopped moving."""
        self._late = True
        self.pending, self._unheeded_since = False, None
        if self._noting:
            _set_timer(STUCK if self.writing is not None and self.count else 0)

    def again(self) -> None:
        """A ``KeyboardInterrupt`` raised where it landed (in a write that waited too long)
        was caught there: the next check raises it, where nothing is cut short."""
        if self._late:
            return
        self._heeded -= 1
        self.pending, self._unheeded_since = True, self._clock()
        if self._noting:
            _set_timer(STUCK)

    def _raise(self, signum, frame) -> None:
        self.count += 1
        self._heeded = self.count
        raise KeyboardInterrupt

    def _note(self, signum, frame) -> None:
        self.count += 1
        now = self._clock()
        if self._late:
            _set_timer(STUCK)  # only a write that stops moving is broken
            return
        if not self.pending:
            self.pending, self._unheeded_since = True, now
            _set_timer(STUCK)
        elif self._unheeded_since is not None and now - self._unheeded_since >= STUCK:
            self._heed(self.count)  # the signals so far, each a try to get through
            raise KeyboardInterrupt

    def _stuck(self, signum, frame) -> None:
        """The timer the first signal set: raised here, as a second signal would be, if the
        main thread has not reached a check since, nor moved a write on."""
        if self._late:
            since = self.writing
        elif self.pending and self._unheeded_since is not None:
            since = max(self._unheeded_since, self.writing or 0.0)
        else:
            return
        if since is None:  # late, and not writing: a write from now on waits only so long
            return
        left = STUCK - (self._clock() - since)
        if left > 0:  # a check heeded one signal and another came since, or a write moved on
            _set_timer(left)
            return
        if not self._late:
            self._heed(self.count)
        raise KeyboardInterrupt

    def _heed(self, upto: int | None = None) -> None:
        self._heeded = self._heeded + 1 if upto is None else upto
        self.pending = False
        if self._heeded < self.count:  # after the clearing: one arriving meanwhile sets it
            self.pending = True
        self._unheeded_since = self._clock() if self.pending else None
        if self._noting:  # outside, SIGALRM would kill the process
            _set_timer(STUCK if self.pending else 0)


_TIMER = hasattr(signal, "setitimer")  # not on Windows


def _set_timer(seconds: float) -> None:
    if _TIMER:
        signal.setitimer(signal.ITIMER_REAL, seconds)
