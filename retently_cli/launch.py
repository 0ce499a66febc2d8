"""The ``retently`` command's entry point.

It imports nothing heavy before it can catch Ctrl-C: importing click, Rich and httpx takes a
few tenths of a second, and an interrupt then must exit 130 like any other, without a
traceback.
"""

import sys

from retently_cli.vocabulary import ExitCode

EXIT_INTERRUPTED = ExitCode.INTERRUPTED


def main() -> None:
    try:
        from retently_cli.cli import cli

        cli(prog_name="retently")
    except KeyboardInterrupt:
        sys.stderr.write("\nretently: interrupted\n")
        sys.exit(EXIT_INTERRUPTED)
