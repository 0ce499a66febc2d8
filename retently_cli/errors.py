"""Failures the user can act on: raised where they are found, shown once, at the edge.

Each is a ``click.ClickException``, so click itself turns it into output (``show``) and an exit
code (``exit_code``) when the command ends, and no helper needs a console to fail through.
"""

from __future__ import annotations

from typing import IO, Any

import click

from retently_cli.vocabulary import ExitCode


class RetentlyError(click.ClickException):
    """One line per problem, each shown as ``retently: ...`` on stderr (red on a terminal)."""

    exit_code = ExitCode.USAGE  # a class variable in click >= 8.5: one per class, never set

    def __init__(self, lines: list[str] | str):
        self.lines = [lines] if isinstance(lines, str) else list(lines)
        super().__init__("\n".join(self.lines))

    def show(self, file: IO[Any] | None = None) -> None:
        from retently_cli.cli.options import show_problems  # it builds the console

        show_problems(self.lines)


class UsageFailure(RetentlyError):
    """Options or inputs that cannot work together: nothing was read or sent (exit 2)."""


class ConfigError(RetentlyError):
    """A config that cannot be used (exit 2). ``problems`` holds one line per problem found."""

    @property
    def problems(self) -> list[str]:
        return self.lines


class ApiFailure(RetentlyError):
    """Retently answered, or could not be reached, in a way that stops the command (exit 1)."""

    exit_code = ExitCode.PROBLEMS


class AuthError(RetentlyError):
    """Retently refused the API key (exit 3)."""

    exit_code = ExitCode.UNAUTHORIZED
