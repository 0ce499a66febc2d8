"""Failures are raised where they are found and shown once, at the edge: the words, the stream
and the exit code are the ones the README promises."""

import orjson
from click.testing import CliRunner
from helpers import EXAMPLE_CONFIG, NPS, ndjson, track

from retently_cli.cli import cli
from retently_cli.errors import ApiFailure, AuthError, ConfigError, UsageFailure
from retently_cli.vocabulary import ExitCode


def run(*args, input=None):
    return CliRunner().invoke(cli, list(args), input=input)


def test_each_kind_of_failure_has_its_exit_code():
    assert UsageFailure("x").exit_code == ConfigError(["x"]).exit_code == ExitCode.USAGE
    assert ApiFailure("x").exit_code == ExitCode.PROBLEMS
    assert AuthError("x").exit_code == ExitCode.UNAUTHORIZED


def test_a_refused_key_is_one_line_on_stderr_with_exit_3(fake, monkeypatch):
    monkeypatch.setenv("RETENTLY_BASE_URL", fake.url)
    monkeypatch.setenv("RETENTLY_API_KEY", "bad-key-123")
    result = run("campaigns")
    assert result.exit_code == 3
    assert result.stdout == ""
    assert result.stderr == "retently: Retently refused the API key (401/403). Check the key.\n"


def test_config_problems_are_one_line_each_escaped_and_exit_2(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(f'campaigns: {{"{NPS}": "Order Completed"}}\nbatch_sise: 5\nrate: 1\n')
    result = run("send", "-n", "-c", str(config), "--campaign", "no\x1bpe", "-", input=b"")
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and all(line.startswith("retently: ") for line in lines)
    assert "Error" not in result.stderr  # click's own way of showing is not used
    refused = run("send", "-n", "-c", str(EXAMPLE_CONFIG), "--campaign", "no\x1bpe", "-")
    assert refused.exit_code == 2
    expected = "retently: --campaign no\\x1bpe: the config maps no such campaign\n"
    assert refused.stderr == expected


def test_a_failure_after_the_config_still_writes_the_summary_json(tmp_path):
    summary = tmp_path / "s.json"
    events = tmp_path / "e.ndjson"
    events.write_bytes(ndjson(track()))
    result = run(
        "send", "-n", "-c", str(EXAMPLE_CONFIG), "--summary-json", str(summary),
        "--report", str(tmp_path / "no-such-dir" / "r.ndjson"), str(events),
    )  # fmt: skip
    assert result.exit_code == 2
    assert "cannot write it" in result.stderr
    assert orjson.loads(summary.read_bytes())["exit_code"] == 2
