"""The command line: click commands only; the work is done in the library modules.

One module per command group: ``send``, ``account`` (check, campaigns), ``preview`` (diff,
coverage, init) and ``ledger``; ``options`` holds what they share (options, consoles, the
config loading they all do).
"""

from __future__ import annotations

import click

from retently_cli import __version__
from retently_cli.cli import account, ledger, preview, send
from retently_cli.cli.options import CONTEXT, EXIT_CODES, RetentlyCommand
from retently_cli.report import EXIT_INTERRUPTED


class _Commands(click.Group):
    command_class = RetentlyCommand

    def invoke(self, ctx):
        """Ctrl-C outside a send's own handling (loading the config, say) exits 130, where
        click would print "Aborted!" and exit 1."""
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("\nretently: interrupted", err=True)
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None


@click.group(cls=_Commands, context_settings=CONTEXT, epilog=EXIT_CODES)
@click.version_option(__version__, "--version", prog_name="retently")
def cli():
    """Replay Segment Track events into Retently transactional surveys.

    \b
    Examples:
      retently check -c retently.yaml
      retently send --dry-run -c retently.yaml segment-logs/
      zcat export.gz | retently send -n --output ndjson -c retently.yaml -
    """


cli.add_command(send.send)
cli.add_command(account.check)
cli.add_command(account.campaigns)
cli.add_command(preview.diff)
cli.add_command(preview.coverage)
cli.add_command(preview.init)
cli.add_command(ledger.ledger)
