"""``check`` and ``campaigns``: the config as understood, and the account it is checked against."""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console
from rich.text import Text

from retently_cli import render
from retently_cli.account import account_answer, campaigns_from, check_campaigns
from retently_cli.cli.options import (
    CONTEXT,
    EXIT_CODES,
    MAPPING_WIDTH,
    RetentlyCommand,
    api_client,
    api_key_file_option,
    config_option,
    exit_if_key_refused,
    load_or_exit,
    refuse_placeholders,
    stderr_console,
    stdout_console,
    verbosity_options,
)
from retently_cli.config import Config, find_config
from retently_cli.delivery import envelope_error
from retently_cli.errors import ApiFailure
from retently_cli.report import EXIT_PROBLEMS
from retently_cli.visible import visible


@click.command(
    cls=RetentlyCommand,
    context_settings=CONTEXT,
    epilog="""\b
Examples:
  retently check -c config.example.yaml
  RETENTLY_CONFIG=prod.yaml retently check
  RETENTLY_API_KEY=... retently check --online -c retently.yaml

"""
    + EXIT_CODES,
)
@config_option
@click.option(
    "--online",
    is_flag=True,
    help="Also ask Retently: is the key accepted, does every mapped campaign exist and can it "
    "send transactional email surveys.",
)
@api_key_file_option
@verbosity_options
def check(config_path, online, api_key_file, verbose, quiet):
    """Validate the config offline and show the mapping as understood.

    With --online, also check the key and the campaigns against the account: exit 1 when a
    mapped campaign does not exist, 3 when the key is refused.
    """
    console = stderr_console()
    config = load_or_exit(console, config_path, quiet)
    refuse_placeholders(console, config)
    code = _check_online(console, config, api_key_file) if online else 0
    if quiet:
        sys.exit(code)
    render.mapping(stdout_console(MAPPING_WIDTH), config)
    sys.exit(code)


def _check_online(console: Console, config: Config, api_key_file) -> int:
    with api_client(config, api_key_file) as client:
        ping = account_answer(client.ping)
        exit_if_key_refused(ping)
        if ping.status != 200 or envelope_error(ping):
            why = envelope_error(ping) or ping.describe()
            raise ApiFailure([f"cannot reach Retently: {why}"])
        answer = account_answer(client.campaigns)
        exit_if_key_refused(answer)
        campaigns = campaigns_from(answer)
        if campaigns is None:
            raise ApiFailure([f"cannot list campaigns: {answer.describe()}"])
    code = 0
    for result in check_campaigns(config, campaigns):
        for problem in result.problems:
            console.print(
                Text(visible(f"retently: campaigns.{result.campaign}: {problem}")), soft_wrap=True
            )
            code = EXIT_PROBLEMS
        for warning in result.warnings:
            console.print(
                Text(visible(f"warning: campaigns.{result.campaign}: {warning}"), style="yellow"),
                soft_wrap=True,
            )
    if code == 0:
        console.print(Text(f"online: key accepted, {len(config.campaigns)} campaigns found"))
    return code


@click.command(
    cls=RetentlyCommand,
    context_settings=CONTEXT,
    epilog="""\b
Examples:
  RETENTLY_API_KEY=... retently campaigns
  retently campaigns --api-key-file ~/.retently-key --output json | jq -r '.[].id'

"""
    + EXIT_CODES,
)
@config_option
@click.option(
    "-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@api_key_file_option
@verbosity_options
def campaigns(config_path, output, api_key_file, verbose, quiet):
    """List the account's campaigns, with the ids to map in the config.

    The config is optional here: without one, the key comes from $RETENTLY_API_KEY or
    --api-key-file.
    """
    console = stderr_console()
    path = find_config(config_path)
    config = (
        load_or_exit(console, config_path, quiet) if config_path or path.exists() else Config(())
    )
    with api_client(config, api_key_file) as client:
        answer = account_answer(client.campaigns)
    exit_if_key_refused(answer)
    found = campaigns_from(answer)
    if found is None:
        raise ApiFailure([f"cannot list campaigns: {answer.describe()}"])
    if output == "json":
        sys.stdout.write(json.dumps(found, indent=2) + "\n")
        return
    render.campaigns(stdout_console(), found, {c.id for c in config.campaigns})
