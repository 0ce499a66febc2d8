"""``-v`` and ``-vv`` as levels of the ``retently`` logger, shown on stderr through Rich.

Modules log to a child of ``retently`` (``log = get_logger(__name__)`` gives
``retently.delivery`` in ``retently_cli/delivery.py``) at INFO for what ``-v`` shows (the
config and inputs in use, each request and its answer) and at DEBUG for what only ``-vv``
shows (request and response bodies). Only the command line installs a handler: a program
that imports the library sees nothing unless it configures logging itself.

Records propagate to the root logger, so pytest's ``caplog`` and an embedding program's own
handlers see them too. The level comes from the command line for the length of one command
(``caplog.set_level`` is overridden meanwhile: pass ``-v``/``-vv`` instead) and is restored
after it, with the handler removed, so one command leaves nothing behind for the next.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.logging import RichHandler
from rich.text import Text

from retently_cli.visible import visible

ROOT = "retently"


def get_logger(module: str) -> logging.Logger:
    """The logger of a module of this package: ``retently_cli.x`` logs as ``retently.x``."""
    return logging.getLogger(ROOT + module.removeprefix("retently_cli"))


def level_for(verbose: int) -> int:
    """-v shows INFO, -vv DEBUG; without either only warnings would show."""
    return logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG


class StderrHandler(RichHandler):
    """Rich's handler, printing a record as the commands print their own lines: dim, with
    control characters made visible, with no level, time or path before it, and never
    wrapped or cropped at the terminal's width (a request body stays one line to copy).
    It prints through the command's own console, so the progress line makes room for it."""

    def __init__(self, console: Console, level: int = logging.NOTSET):
        super().__init__(
            level,
            console=console,
            show_time=False,
            show_level=False,
            show_path=False,
            markup=False,
            highlighter=None,
            keywords=[],
        )

    def render_message(self, record: logging.LogRecord, message: str) -> Text:
        return Text("\n".join(map(visible, message.split("\n"))), style="dim")

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if message:  # a traceback may come alone
                self.console.print(self.render_message(record, message), soft_wrap=True)
            if record.exc_info and record.exc_info[1] is not None:
                # Imported here: it costs every run 30 ms at start (with rich.pretty), and only
                # a run that fails with -v shows one.
                from rich.traceback import Traceback

                # never its locals: one of them could hold the key
                self.console.print(Traceback.from_exception(*record.exc_info, show_locals=False))
        except Exception:
            self.handleError(record)


@contextmanager
def logging_to(console: Console, verbose: int) -> Iterator[logging.Logger]:
    """For the length of one command: the ``retently`` logger at the level ``verbose`` asks,
    shown on ``console`` (stderr: stdout carries the records). Handlers other than this one
    (a test's, caplog's) are left as they are."""
    logger = logging.getLogger(ROOT)
    handler = StderrHandler(console)
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(level_for(verbose))
    logger.propagate = True
    try:
        yield logger
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
