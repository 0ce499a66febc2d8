"""`retently check` and the config handling every command shares, through click's CliRunner."""

from __future__ import annotations

import json
import re
from importlib.metadata import version
from textwrap import dedent

import pytest
from helpers import run

from retently_cli import __version__
from retently_cli.fake_server import FakeRetently

SECRET = "sk_live_SECRET123"
ENV_SECRET = "sk_env_SECRET456"

GOOD = """\
api_key: ${RETENTLY_API_KEY}
campaigns:
  "5e1f9a": "Order Placed, Dashboard Visited"
  "61ab2c":
    events: ["Subscription Activate Button Clicked", "Order Placed"]
    delay: 3
email_paths: [properties.email, context.traits.email]
properties:
  exclude: [password_hash]
  types: {signup_date: date}
"""

EVENT = json.dumps(
    {
        "type": "track",
        "event": "Order Placed",
        "messageId": "m-1",
        "userId": "u-1",
        "properties": {"email": "ada@example.com"},
    }
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """Each test in an empty folder, without the variables a developer's shell may hold."""
    for name in ("RETENTLY_CONFIG", "RETENTLY_API_KEY", "FORCE_COLOR", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def write(name: str, text: str) -> str:
    with open(name, "w", encoding="utf-8") as f:
        f.write(dedent(text))
    return name


def squeeze(text: str) -> list[str]:
    """Output lines with runs of spaces made one, so table rows compare as words."""
    return [re.sub(r" +", " ", line).strip() for line in text.splitlines()]


def assert_refused(result, *stderr_lines: str) -> None:
    """Exit 2, exactly these lines on stderr, nothing on stdout, no traceback."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert result.stdout == ""
    assert result.stderr.splitlines() == list(stderr_lines)
    assert "Traceback" not in result.stderr


# -- a good config -------------------------------------------------------------------------------


def test_check_prints_both_mappings_on_stdout():
    write("good.yaml", GOOD)
    result = run("check", "-c", "good.yaml")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    lines = squeeze(result.stdout)
    assert lines[0] == "good.yaml: OK"
    by_campaign = lines.index("campaign -> events")
    by_event = lines.index("event -> campaigns")
    assert by_campaign < by_event
    assert lines[by_campaign + 1 : by_event] == [
        "campaign delay events",
        "5e1f9a campaign's own 'Order Placed', 'Dashboard Visited'",
        "61ab2c 3 d 'Subscription Activate Button Clicked', 'Order Placed'",
    ]
    assert lines[by_event + 1 : by_event + 5] == [
        "event campaigns",
        "'Dashboard Visited' 5e1f9a",
        "'Order Placed' 5e1f9a, 61ab2c",
        "'Subscription Activate Button Clicked' 61ab2c",
    ]
    assert lines[by_event + 5 :] == [
        "email looked up at: properties.email, context.traits.email",
        "properties excluded: password_hash",
        "property types forced: signup_date: date",
    ]


def test_check_shows_names_exactly_with_their_spaces_and_commas():
    write("c.yaml", 'campaigns:\n  abc123:\n    events: ["Cart, Saved", " Padded "]\n')
    result = run("check", "-c", "c.yaml")
    assert result.exit_code == 0, result.output
    assert "'Cart, Saved', ' Padded '" in result.stdout


def test_check_table_titles_stay_on_one_line_with_short_names():
    write("c.yaml", "campaigns:\n  a: X\n")
    result = run("check", "-c", "c.yaml")
    assert result.exit_code == 0, result.output
    assert "event -> campaigns" in squeeze(result.stdout)


def test_check_quiet_prints_nothing():
    write("good.yaml", GOOD)
    result = run("check", "-q", "-c", "good.yaml")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "")


# -- a bad config --------------------------------------------------------------------------------

BAD = [
    (
        "unknown key",
        """\
        campaigns:
          a: X
        email_path: [properties.email]
        """,
        "bad.yaml:3: email_path: unknown key; did you mean 'email_paths'? "
        "(known: api_key, campaigns, email_paths, properties, identities, base_url, batch_size, "
        "rate_limit, concurrency, timeout, max_attempts)",
    ),
    (
        "key written twice",
        """\
        campaigns:
          a: X
          a: Y
        """,
        "bad.yaml:3: campaigns.a: written twice (first on line 2)",
    ),
    (
        "stray comma",
        """\
        campaigns:
          a: "Order Placed,"
        """,
        "bad.yaml:2: campaigns.a: has an empty event name (a stray comma?)",
    ),
    (
        "name listed twice",
        """\
        campaigns:
          a: "Order Placed, Order Placed"
        """,
        "bad.yaml:2: campaigns.a: lists 'Order Placed' twice",
    ),
    (
        "wrong type",
        """\
        campaigns:
          a:
            events: X
            delay: three
        """,
        "bad.yaml:4: campaigns.a.delay: must be a whole number of days (0 or more), got 'three'",
    ),
    (
        "empty campaigns",
        """\
        campaigns: {}
        """,
        "bad.yaml:1: campaigns: must map at least one campaign id to event names",
    ),
    (
        "invalid YAML",
        """\
        campaigns:
          a: [X
        """,
        "bad.yaml:3: not valid YAML: while parsing a flow sequence, expected ',' or ']', "
        "but got '<stream end>'",
    ),
    (
        "empty file",
        "",
        "bad.yaml: the config is empty; it needs at least 'campaigns'",
    ),
]


@pytest.mark.parametrize(("text", "message"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_check_refuses_a_bad_config(text, message):
    write("bad.yaml", text)
    assert_refused(run("check", "-c", "bad.yaml"), f"retently: {message}")


def test_check_lists_every_problem():
    write("bad.yaml", "campaigns:\n  a: ''\ncolour: red\n")
    assert_refused(
        run("check", "-c", "bad.yaml"),
        "retently: bad.yaml:2: campaigns.a: lists no event names",
        "retently: bad.yaml:3: colour: unknown key "
        "(known: api_key, campaigns, email_paths, properties, identities, base_url, batch_size, "
        "rate_limit, concurrency, timeout, max_attempts)",
    )


def test_a_long_error_line_is_not_wrapped(tmp_path):
    folder = tmp_path / ("a-rather-long-folder-name-" * 3)
    folder.mkdir()
    path = folder / "retently.yaml"
    path.write_text("campaigns:\n  a: X\nemail_path: [x]\n", encoding="utf-8")
    result = run("check", "-c", str(path))
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1


def test_check_missing_file_given_with_c():
    assert_refused(run("check", "-c", "nope.yaml"), "retently: nope.yaml: config file not found")


def test_check_without_any_config_says_how_to_give_one():
    assert_refused(
        run("check"),
        "retently: retently.yaml: config file not found",
        "retently: give one with --config/-c or $RETENTLY_CONFIG",
    )


def test_check_missing_file_named_by_the_environment(monkeypatch):
    monkeypatch.setenv("RETENTLY_CONFIG", "gone.yaml")
    result = run("check")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == "retently: gone.yaml: config file not found"


# -- discovery -----------------------------------------------------------------------------------


@pytest.fixture
def three_configs(monkeypatch):
    """A config for each place one can come from; each maps a campaign named after it."""
    write("flag.yaml", "campaigns:\n  from-flag: X\n")
    write("env.yaml", "campaigns:\n  from-env: X\n")
    write("retently.yaml", "campaigns:\n  from-default: X\n")


@pytest.mark.parametrize("option", ["-c", "--config"])
def test_config_option_beats_the_environment_and_the_default(three_configs, monkeypatch, option):
    monkeypatch.setenv("RETENTLY_CONFIG", "env.yaml")
    result = run("check", "-v", option, "flag.yaml")
    assert result.exit_code == 0, result.output
    assert "from-flag" in result.stdout
    assert "from-env" not in result.stdout and "from-default" not in result.stdout
    assert "config: flag.yaml (--config)" in result.stderr.splitlines()


def test_environment_beats_the_default(three_configs, monkeypatch):
    monkeypatch.setenv("RETENTLY_CONFIG", "env.yaml")
    result = run("check", "-v")
    assert result.exit_code == 0, result.output
    assert "from-env" in result.stdout and "from-default" not in result.stdout
    assert "config: env.yaml ($RETENTLY_CONFIG)" in result.stderr.splitlines()


def test_default_is_retently_yaml_in_the_current_folder(three_configs):
    result = run("check", "-v")
    assert result.exit_code == 0, result.output
    assert "from-default" in result.stdout
    assert "config: retently.yaml (default)" in result.stderr.splitlines()


def test_the_file_in_use_is_named_only_at_v(three_configs):
    result = run("check")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""


# -- send: the config is checked before any event is read ----------------------------------------


def test_send_dry_run_with_a_good_config_prints_a_record():
    """The control for the next test: this input does produce a record."""
    write("good.yaml", GOOD)
    result = run("send", "-c", "good.yaml", "--dry-run", "-o", "ndjson", "-", input=EVENT + "\n")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["campaign"], r["outcome"]) for r in records] == [
        ("5e1f9a", "dry_run"),
        ("61ab2c", "dry_run"),
    ]


def test_send_dry_run_with_a_bad_config_reads_nothing():
    write("bad.yaml", GOOD.replace("delay: 3", "delay: -3"))
    result = run("send", "-c", "bad.yaml", "--dry-run", "-o", "ndjson", "-", input=EVENT + "\n")
    assert_refused(
        result,
        "retently: bad.yaml:6: campaigns.61ab2c.delay: "
        "must be a whole number of days (0 or more), got '-3'",
    )


def test_send_dry_run_does_not_need_the_api_key():
    write("good.yaml", GOOD)
    result = run("send", "-n", "-o", "ndjson", "-c", "good.yaml", "-", input=EVENT + "\n")
    assert result.exit_code == 0, result.output


def test_send_needs_the_variable_of_the_api_key():
    write("c.yaml", "campaigns:\n  a: Order Placed\n\napi_key: ${RETENTLY_API_KEY}\n")
    result = run("send", "-c", "c.yaml", "-o", "ndjson", "-", input=EVENT + "\n")
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)
    assert result.stdout == ""
    assert result.stderr.splitlines()[0] == (
        "retently: c.yaml:4: api_key: environment variable RETENTLY_API_KEY is not set"
    )
    assert "Traceback" not in result.stderr


def test_send_needs_an_api_key():
    write("c.yaml", "campaigns:\n  a: Order Placed\n")
    result = run("send", "-c", "c.yaml", "-", input=EVENT + "\n")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines()[0] == (
        "retently: no API key: set api_key in the config, or $RETENTLY_API_KEY, or pass "
        "--api-key-file PATH (a dry-run, -n, needs none)"
    )


# -- the key never shows -------------------------------------------------------------------------

KEY_RUNS = [
    ("check", "-v"),
    ("check", "-vv"),
    ("send", "-n", "-v", "-"),
    ("send", "-n", "-vv", "--all-rows", "-"),
    ("send", "-n", "-vv", "-o", "ndjson", "-"),
    ("send", "-v", "-"),
    ("send", "-vv", "-o", "ndjson", "-"),
]


@pytest.mark.parametrize("args", KEY_RUNS, ids=" ".join)
@pytest.mark.parametrize("where", ["literal", "environment"])
def test_the_key_never_appears_in_any_output(monkeypatch, args, where):
    key = SECRET if where == "literal" else ENV_SECRET
    if where == "literal":
        write("c.yaml", GOOD.replace("${RETENTLY_API_KEY}", SECRET))
    else:
        write("c.yaml", GOOD)
        monkeypatch.setenv("RETENTLY_API_KEY", ENV_SECRET)
    campaigns = [
        {
            "id": cid,
            "name": cid,
            "isActive": True,
            "templateId": "t",
            "metric": "NPS",
            "type": "transactional",
            "channel": "email",
        }
        for cid in ("5e1f9a", "61ab2c")
    ]
    with FakeRetently(api_key=key, campaigns=campaigns) as server:
        monkeypatch.setenv("RETENTLY_BASE_URL", server.url)
        result = run(*args, "-c", "c.yaml", input=EVENT + "\n")
        delivered = server.survey_count()
    assert "Traceback" not in result.stderr
    assert result.exit_code == 0, result.output
    assert delivered == (2 if args[0] == "send" and "-n" not in args else 0)
    for secret in (SECRET, ENV_SECRET, "SECRET"):
        assert secret not in result.stdout
        assert secret not in result.stderr


@pytest.mark.parametrize(
    "broken",
    [
        f"api_key: {SECRET}\napi_key: {SECRET}\ncampaigns: {{a: X}}\n",
        f"api_key: [{SECRET}]\ncampaigns: {{a: X}}\n",
        f"apikey: {SECRET}\ncampaigns: {{a: X}}\n",
        f"api_key: {SECRET}\ncampaigns:\n  a: X\n b: Y\n",
        f'api_key: "{SECRET}\ncampaigns: {{a: X}}\n',
        f"api_key: {SECRET}\ncampaigns:\n  a:\n    events: X\n    delay: -1\n",
    ],
    ids=["twice", "list", "typo", "bad YAML", "unclosed quote", "other error"],
)
@pytest.mark.parametrize("args", [("check", "-vv"), ("send", "-n", "-vv", "-")], ids=" ".join)
def test_the_key_never_appears_in_an_error(broken, args):
    write("c.yaml", broken)
    result = run(*args, "-c", "c.yaml", input=EVENT + "\n")
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0] == "config: c.yaml (--config)"
    assert lines[1].startswith("retently: c.yaml")
    assert "SECRET" not in result.stdout + result.stderr


def test_the_key_from_the_environment_is_not_in_a_variable_error(monkeypatch):
    write("c.yaml", 'api_key: "${KEY_ID}:${KEY_PART}"\ncampaigns: {a: X}\n')
    monkeypatch.setenv("KEY_ID", ENV_SECRET)
    monkeypatch.delenv("KEY_PART", raising=False)
    result = run("send", "-vv", "-c", "c.yaml", "-", input=EVENT + "\n")
    assert result.exit_code == 2
    assert "retently: c.yaml:1: api_key: environment variable KEY_PART is not set" in (
        result.stderr.splitlines()
    )
    assert "SECRET" not in result.stdout + result.stderr


# -- help and version ----------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_check_help_shows_an_example_and_the_exit_codes(flag):
    result = run("check", flag)
    assert result.exit_code == 0
    lines = squeeze(result.stdout)
    assert "Usage: retently check [OPTIONS]" in lines
    assert "retently check -c config.example.yaml" in lines
    assert "Exit codes:" in lines
    assert "0 all good" in lines
    assert (
        "2 usage or config error (nothing was sent), or the ledger failed during the run" in lines
    )


def test_version():
    result = run("--version")
    assert result.exit_code == 0
    assert result.stdout == f"retently, version {__version__}\n"
    assert __version__ == version("retently-cli")
