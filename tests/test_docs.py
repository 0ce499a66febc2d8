"""The README's words are the code's words: outcomes, reasons, exit codes and defaults."""

import inspect
import re
from pathlib import Path

import click
import yaml
from click.testing import CliRunner
from helpers import NPS

from retently_cli.cli import cli
from retently_cli.client import RetentlyClient
from retently_cli.config import DEFAULT_BASE_URL, DELIVERY_DEFAULTS, parse_config
from retently_cli.delivery import RetryPolicy
from retently_cli.run import DryRunDelivery, LiveDelivery
from retently_cli.vocabulary import ExitCode, Outcome, Reason

README_PATH = Path(__file__).resolve().parent.parent / "README.md"
README = README_PATH.read_text()


def _section(title: str) -> str:
    start = README.index(title)
    end = README.find("\n#", start + len(title))
    return README[start:end]


def _table(section: str) -> dict[str, str]:
    """A markdown table's rows, first cell to second, header and rule left out."""
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) >= 2 and not set(cells[0]) <= set("- "):
            rows[cells[0]] = cells[1]
    rows.pop("code", None), rows.pop("field", None)
    return rows


def _column(section: str, header: str) -> dict[str, str]:
    """The table whose header has ``header``: each row's first cell to its cell there."""
    rows: dict[str, str] = {}
    at = None
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|"):
            if rows:
                break
            at = None
        elif at is None:
            at = cells.index(header) if header in cells else None
        elif not set(cells[0]) <= set("- "):
            rows[cells[0]] = cells[at]
    return rows


def _words(text: str) -> set[str]:
    return set(re.findall(r"`([a-z][a-z0-9_]*)`", text))


def test_the_outcomes_in_the_readme_are_the_outcomes():
    fields = _table(_section("## The report"))
    assert _words(fields["`outcome`"]) == {o.value for o in Outcome}


def test_the_reasons_in_the_readme_are_the_reasons():
    report = _section("## The report")
    fields = _table(report)
    delivery = report[report.index("Delivery failures") :]
    delivery = delivery[: delivery.index("\n\n")]
    documented = _words(fields["`reason`"]) | _words(delivery)
    field_names = set().union(*map(_words, fields))
    assert documented - {o.value for o in Outcome} - field_names == {r.value for r in Reason}


def test_the_exit_codes_in_the_readme_and_the_help_are_the_exit_codes():
    codes = {int(code) for code in _table(_section("### Exit codes"))}
    assert codes == {int(c) for c in ExitCode}
    help_text = CliRunner().invoke(cli, ["--help"]).output
    listed = help_text[help_text.index("Exit codes:") :]
    assert {int(n) for n in re.findall(r"^\s+(\d+)\s", listed, re.M)} == codes


def test_the_delivery_defaults_in_the_readme_and_the_example_are_the_defaults():
    rows = _table(_section("## Config"))
    example = yaml.safe_load((README_PATH.parent / "config.example.yaml").read_text())
    for key in ("batch_size", "rate_limit", "concurrency", "timeout", "max_attempts"):
        default = getattr(DELIVERY_DEFAULTS, key)
        assert re.search(rf"default {default:g}\b", rows[f"`{key}`"]), key
        assert example[key] == default, key
    assert rows["`base_url`"].startswith(f"The API's address, default `{DEFAULT_BASE_URL}`")
    assert parse_config(f'campaigns: {{"{NPS}": Signed Up}}').delivery == DELIVERY_DEFAULTS


def test_what_delivers_without_a_config_defaults_as_a_config_does():
    def default(callable_, name):
        return inspect.signature(callable_).parameters[name].default

    assert RetryPolicy().max_attempts == DELIVERY_DEFAULTS.max_attempts
    assert default(DryRunDelivery, "batch_size") == DELIVERY_DEFAULTS.batch_size
    assert default(LiveDelivery, "batch_size") == DELIVERY_DEFAULTS.batch_size
    assert default(RetentlyClient, "timeout") == DELIVERY_DEFAULTS.timeout


def _commands(group: click.Group, prefix: str = ""):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", command


def test_the_output_choices_in_the_readme_are_each_commands_choices():
    documented = {
        command.strip("`"): _words(choices)
        for command, choices in _column(_section("## Commands"), "`-o`").items()
    }
    actual = {}
    for name, command in _commands(cli):
        output = next((p for p in command.params if p.name == "output"), None)
        actual[name] = set(output.type.choices) if output is not None else set()
    assert documented == actual
    assert set().union(*actual.values()) == {"table", "json", "ndjson"}
