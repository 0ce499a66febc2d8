"""``check`` and ``campaigns``: the config as understood, and the account it is checked against."""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from retently_cli.account import account_answer, campaigns_from, check_campaigns
from retently_cli.cli.options import (
    CONTEXT,
    EXIT_CODES,
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
    out = stdout_console(120)
    out.print(Text(f"{visible(str(config.path))}: OK", style="green"))
    out.print(Text("campaign -> events", style="bold"))
    campaigns = Table(box=None, pad_edge=False)
    campaigns.add_column("campaign", style="bold")
    campaigns.add_column("delay")
    campaigns.add_column("events")
    for campaign in config.campaigns:
        delay = "campaign's own" if campaign.delay is None else f"{campaign.delay} d"
        campaigns.add_row(
            Text(visible(campaign.id)), delay, Text(", ".join(repr(e) for e in campaign.events))
        )
    out.print(campaigns)
    out.print(Text("event -> campaigns", style="bold"))
    events = Table(box=None, pad_edge=False)
    events.add_column("event", style="bold")
    events.add_column("campaigns")
    for name, mapped in sorted(config.campaigns_by_event().items()):
        events.add_row(Text(repr(name)), Text(visible(", ".join(c.id for c in mapped))))
    out.print(events)
    paths = ", ".join(config.email_paths)
    out.print(Text(visible(f"email looked up at: {paths}")))
    if config.from_identify:
        out.print(Text("else the email learned from Identify calls (identities.from_identify)"))
    if config.exclude:
        out.print(Text(visible(f"properties excluded: {', '.join(sorted(config.exclude))}")))
    if config.types:
        forced = ", ".join(f"{k}: {v}" for k, v in sorted(config.types.items()))
        out.print(Text(visible(f"property types forced: {forced}")))
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
    out = stdout_console(160)
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("id", "name", "metric", "type", "channel", "active"):
        table.add_column(column)
    mapped = {c.id for c in config.campaigns}
    for c in found:
        table.add_row(
            Text(visible(str(c.get("id"))), style="bold" if str(c.get("id")) in mapped else ""),
            Text(visible(str(c.get("name", "")))),
            Text(visible(str(c.get("metric", "")))),
            Text(visible(str(c.get("type", "")))),
            Text(visible(str(c.get("channel", "")))),
            "yes" if c.get("isActive") else "no",
        )
    out.print(table)
