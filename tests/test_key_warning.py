"""A config holding a literal API key that other users can read is warned about by every
command that loads it, not only when the key is used: check and a dry-run too."""

import pytest
from helpers import NPS, TEST_KEY, ndjson, run, track

WARNING = "holds a literal API key and other users can read it"


@pytest.fixture
def readable_config(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(f'api_key: {TEST_KEY}\ncampaigns: {{"{NPS}": "Order Completed"}}\n')
    config.chmod(0o644)
    return config


@pytest.mark.parametrize(
    "command",
    [["check"], ["send", "-n", "--no-ledger", "-"], ["coverage", "-"]],
    ids=["check", "dry-run", "coverage"],
)
def test_a_readable_literal_key_is_warned_about_without_sending(readable_config, command):
    name, *rest = command
    result = run(name, "-c", str(readable_config), *rest, input=ndjson(track()))
    assert result.exit_code == 0, result.stderr
    assert result.stderr.count(WARNING) == 1
    assert f"chmod 600 {readable_config}" in result.stderr
    assert TEST_KEY not in result.stderr + result.stdout
    quiet = run(name, "-q", "-c", str(readable_config), *rest, input=ndjson(track()))
    assert quiet.exit_code == 0 and WARNING not in quiet.stderr
    readable_config.chmod(0o600)
    private = run(name, "-c", str(readable_config), *rest, input=ndjson(track()))
    assert private.exit_code == 0 and WARNING not in private.stderr


def test_a_key_from_the_environment_is_not_warned_about(tmp_path, monkeypatch):
    config = tmp_path / "c.yaml"
    config.write_text(
        f'api_key: ${{RETENTLY_API_KEY}}\ncampaigns: {{"{NPS}": "Order Completed"}}\n'
    )
    config.chmod(0o644)
    monkeypatch.setenv("RETENTLY_API_KEY", TEST_KEY)
    for args in (["check"], ["send", "-n", "--no-ledger", "-"]):
        result = run(args[0], "-c", str(config), *args[1:], input=ndjson(track()))
        assert result.exit_code == 0 and "literal API key" not in result.stderr


def test_a_real_send_warns_once(fake, monkeypatch, readable_config):
    monkeypatch.setenv("RETENTLY_BASE_URL", fake.url)
    result = run("send", "--no-ledger", "-c", str(readable_config), "-", input=ndjson(track()))
    assert result.exit_code == 0, result.stderr
    assert result.stderr.count(WARNING) == 1
    assert fake.survey_count() == 1


def test_diff_warns_about_either_config(readable_config, tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text(f'campaigns: {{"{NPS}": "Order Completed"}}\n')
    result = run("diff", str(other), str(readable_config), "-", input=ndjson(track()))
    assert result.exit_code == 0, result.stderr
    assert result.stderr.count(WARNING) == 1 and TEST_KEY not in result.stderr + result.stdout
    quiet = run("diff", "-q", str(readable_config), str(other), "-", input=ndjson(track()))
    assert WARNING not in quiet.stderr
