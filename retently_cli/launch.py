"""The ``retently`` command's entry point.

It imports nothing heavy before it can catch Ctrl-C: importing click, Rich and httpx takes a
few tenths of a second, and an interrupt then must exit 130 like any other, without a
traceback.
"""

import gc
import sys

from retently_cli.interrupts import Interrupts
from retently_cli.vocabulary import ExitCode

EXIT_INTERRUPTED = ExitCode.INTERRUPTED


# A run keeps few objects but makes millions (a dict per event, frames of thousands of
# entries from the workers): at the default threshold of 700 the collector ran 717 times in a
# dry-run of 1M events, about 4% of the main process's CPU. Cycles are still collected.
_GC_THRESHOLD = 10_000
SWITCH_INTERVAL = 0.0005  # seconds: the GIL's, for the main process and its workers


def main() -> None:
    gc.set_threshold(_GC_THRESHOLD, *gc.get_threshold()[1:])
    # The thread reading ahead (inflating) needs the GIL back after each chunk, and the
    # parsing thread keeps it up to the switch interval (5 ms by default).
    sys.setswitchinterval(SWITCH_INTERVAL)
    try:
        # A Ctrl-C raised inside an import can land in importlib's own callbacks, which drop
        # it ("Exception ignored in ... KeyboardInterrupt") and the run went on: noted here,
        # it is acted on once the imports are done.
        interrupts = Interrupts()
        with interrupts.noted():
            from retently_cli.cli import cli
        interrupts.check()
        cli(prog_name="retently")
    except KeyboardInterrupt:
        sys.stderr.write("\nretently: interrupted\n")
        sys.exit(EXIT_INTERRUPTED)
