"""The environment variables the options read are named in each command's --help, and the
names come from one place."""

import pytest
from click.testing import CliRunner

from retently_cli.cli import cli
from retently_cli.vocabulary import EnvVar


@pytest.mark.parametrize(
    "command, names",
    [
        (["send"], [EnvVar.CONFIG, EnvVar.LEDGER]),
        (["check"], [EnvVar.CONFIG]),
        (["campaigns"], [EnvVar.CONFIG]),
        (["diff"], []),
        (["coverage"], [EnvVar.CONFIG]),
        (["ledger", "status"], [EnvVar.CONFIG, EnvVar.LEDGER]),
        (["ledger", "list"], [EnvVar.LEDGER]),
        (["ledger", "resolve"], [EnvVar.CONFIG, EnvVar.LEDGER]),
    ],
)
def test_help_names_the_environment_variables_an_option_reads(command, names):
    shown = CliRunner().invoke(cli, [*command, "--help"], terminal_width=200).output
    for name in names:
        assert f"env var: {name}" in " ".join(shown.split()), (command, name)


@pytest.mark.parametrize("command", [["send"], ["check"], ["campaigns"], ["init"]])
def test_help_says_the_key_falls_back_to_its_environment_variable(command):
    """--api-key-file reads a file, not the variable, so it has no envvar= of its own."""
    shown = CliRunner().invoke(cli, [*command, "--help"], terminal_width=200).output
    shown = " ".join(shown.split())
    assert f"api_key in the config, else ${EnvVar.API_KEY}" in shown


def test_an_empty_retently_config_is_no_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RETENTLY_CONFIG", "")
    result = CliRunner().invoke(cli, ["check", "-v"])
    assert result.exit_code == 2
    assert "retently.yaml: config file not found" in result.stderr
    assert "give one with --config/-c or $RETENTLY_CONFIG" in result.stderr
