"""Control characters in the data never reach a terminal: every human-readable output shows
them escaped (``\\x1b``, ``\\u202e``), NDJSON keeps them exact, and such an email is invalid."""

import fcntl
import os
import pty
import struct
import subprocess
import termios

import orjson
import pytest
from helpers import (
    EXAMPLE_CONFIG,
    NPS,
    RETENTLY,
    TEST_KEY,
    ndjson,
    read_terminal,
    records,
    run,
    track,
)

from retently_cli.fake_server import FakeRetently
from retently_cli.visible import visible

OSC = "\x1b]0;pwned\x07"  # retitles the terminal window
CLEAR = "\x1b[2J"  # clears the screen
RLO = "\u202e"  # shows what follows right to left
BAD_EVENT = f"O{OSC}"
BAD_EMAIL = f"{OSC}@x.io"
BAD_FILE = f"e{CLEAR}.ndjson"
INJECTED = (OSC, CLEAR, "\x1b]", "\x1b[2", RLO, "\x00")


def assert_nothing_injected(text: str) -> None:
    for sequence in INJECTED:
        assert sequence not in text, f"{sequence!r} reached the output"


@pytest.fixture
def hostile(tmp_path):
    """A config and an input file whose names, ids, events and emails carry control codes."""
    config = tmp_path / "c.yaml"
    config.write_text(
        f'campaigns:\n  "{NPS}": "Order Completed"\n'
        '  "5e1\\e[2J": ["O\\e]0;pwned\\a", "Zo\\u202eë"]\n',
        encoding="utf-8",
    )
    events = tmp_path / BAD_FILE
    events.write_bytes(
        ndjson(
            track(message_id="a", email=BAD_EMAIL),
            track(event=BAD_EVENT, message_id="b", email="ann@example.com"),
            track(event=f"Unmapped{CLEAR}", message_id="c", email="bob@example.com"),
            track(message_id=f"id{RLO}", email=f"carl{RLO}@example.com"),
        )
        + f'{{"broken": "{CLEAR}\n'.encode()
    )
    return config, events


@pytest.mark.parametrize(
    "raw, shown",
    [
        ("\x1b[2J", "\\x1b[2J"),
        ("\x00\x07\x7f", "\\x00\\x07\\x7f"),
        ("a\nb\tc\r", "a\\nb\\tc\\r"),
        ("\x85\x9b", "\\x85\\x9b"),
        ("\u202a\u202e\u2066\u2069", "\\u202a\\u202e\\u2066\\u2069"),
        ("\u200e\u200f\u061c", "\\u200e\\u200f\\u061c"),
        ("Zoë 🎉 日本 O'Brien", "Zoë 🎉 日本 O'Brien"),
    ],
)  # fmt: skip
def test_visible_shows_control_characters_as_escapes(raw, shown):
    assert visible(raw) == shown


@pytest.mark.parametrize("char", ["\x1b", "\x00", "\x7f", "\x85", RLO, "\u2066", "\u200f"])
def test_an_email_with_a_control_character_is_invalid_and_ndjson_keeps_it_exact(char):
    email = f"ann{char}@example.com"
    result = run(
        "send",
        "-n",
        "-o",
        "ndjson",
        "-c",
        str(EXAMPLE_CONFIG),
        "-",
        input=ndjson(track(email=email)),
    )
    (record,) = [r for r in records(result.stdout) if r["campaign"] == NPS]
    assert (record["outcome"], record["reason"]) == ("skipped", "invalid_email")
    assert record["email"] == email


def test_the_send_table_and_summary_show_data_escaped(hostile, monkeypatch):
    config, events = hostile
    monkeypatch.setenv("COLUMNS", "300")  # room for the whole of every cell
    result = run("send", "-n", "--all-rows", "--no-ledger", "-c", str(config), str(events))
    assert result.exit_code == 1, result.stderr  # the broken line
    assert_nothing_injected(result.stderr)
    for shown in (
        "\\x1b]0;pwned\\x07@x.io",
        "O\\x1b]0;pwned\\x07",
        "Unmapped\\x1b[2J",
        "carl\\u202e@example.com",
        "id\\u202e",
        "e\\x1b[2J.ndjson",
        "5e1\\x1b[2J",
    ):
        assert shown in result.stderr, shown  # fmt: skip
    assert '{"broken": "\\x1b[2J' in result.stderr  # the malformed line, as quoted in the reason


def test_check_coverage_and_diff_show_data_escaped(hostile, tmp_path):
    config, events = hostile
    check = run("check", "-c", str(config))
    assert check.exit_code == 0, check.stderr
    assert_nothing_injected(check.stdout)
    assert "5e1\\x1b[2J" in check.stdout and "Zo\\u202eë" in check.stdout
    coverage = run("coverage", "-c", str(config), str(events))
    assert_nothing_injected(coverage.stdout + coverage.stderr)
    assert "5e1\\x1b[2J" in coverage.stdout and "Unmapped\\x1b[2J" in coverage.stdout
    old = tmp_path / "old.yaml"
    old.write_text(f'campaigns: {{"{NPS}": "Order Completed"}}\n')
    diff = run("diff", str(old), str(config), str(events))
    assert diff.exit_code == 1, diff.stderr
    assert_nothing_injected(diff.stdout + diff.stderr)
    assert "5e1\\x1b[2J" in diff.stdout and "ann@example.com" in diff.stdout


def test_errors_and_notes_naming_files_show_them_escaped(tmp_path, monkeypatch):
    missing = run("send", "-n", "-c", str(tmp_path / BAD_FILE), "-", input=b"")
    assert missing.exit_code == 2
    assert_nothing_injected(missing.stderr)
    assert "e\\x1b[2J.ndjson" in missing.stderr
    config = tmp_path / f"c{CLEAR}.yaml"
    config.write_text(f'campaigns: {{"{NPS}": "Order Completed"}}\n')
    verbose = run(
        "send", "-n", "-v", "-c", str(config), "--ledger", str(tmp_path / f"l{OSC}"), "-", input=b""
    )
    assert verbose.exit_code == 0, verbose.stderr
    assert_nothing_injected(verbose.stderr)
    assert "c\\x1b[2J.yaml" in verbose.stderr and "l\\x1b]0;pwned\\x07" in verbose.stderr
    init = run("init", str(tmp_path / f"s{CLEAR}.yaml"))
    assert init.exit_code == 0, init.stderr
    assert_nothing_injected(init.stderr)
    assert "s\\x1b[2J.yaml" in init.stderr


def test_campaign_names_from_the_account_are_shown_escaped(monkeypatch):
    listed = [{"id": f"c{CLEAR}", "name": f"NPS{OSC}", "metric": "NPS", "type": "transactional",
               "channel": "email", "isActive": True}]  # fmt: skip
    with FakeRetently(api_key=TEST_KEY, campaigns=listed) as fake:
        monkeypatch.setenv("RETENTLY_BASE_URL", fake.url)
        monkeypatch.setenv("RETENTLY_API_KEY", TEST_KEY)
        result = run("campaigns")
    assert result.exit_code == 0, result.stderr
    assert_nothing_injected(result.stdout)
    assert "c\\x1b[2J" in result.stdout and "NPS\\x1b]0;pwned\\x07" in result.stdout


@pytest.mark.slow
def test_under_a_terminal_the_injected_sequences_never_arrive(hostile):
    """Rich styles its own output with escapes on a terminal; the data's must not get through."""
    config, events = hostile
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 220, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "FORCE_COLOR": "1"}
    for name in ("NO_COLOR", "COLUMNS"):
        env.pop(name, None)
    proc = subprocess.Popen(
        [*RETENTLY, "send", "-n", "--all-rows", "--no-ledger",
         "-c", str(config), events.name],
        stdout=follower, stderr=follower, stdin=subprocess.DEVNULL, env=env, cwd=events.parent,
    )  # fmt: skip
    os.close(follower)
    seen = read_terminal(leader, proc).decode("utf-8", "replace")
    os.close(leader)
    assert proc.returncode == 1
    assert "\x1b[" in seen  # Rich's own styling is there: this was a terminal
    for sequence in (OSC, CLEAR, "\x1b]", RLO):
        assert sequence not in seen, f"{sequence!r} reached the terminal"
    for shown in ("\\x1b]0;pwned\\x07@x.io", "e\\x1b[2J.ndjson", "Unmapped\\x1b[2J"):
        assert shown in seen, shown


def test_ndjson_records_keep_the_data_exact(hostile):
    config, events = hostile
    result = run("send", "-n", "-o", "ndjson", "--no-ledger", "-c", str(config), str(events))
    got = records(result.stdout)
    assert {r["email"] for r in got} >= {BAD_EMAIL, f"carl{RLO}@example.com"}
    assert str(events) in {r["source"] for r in got}
    assert BAD_EVENT in {r["event"] for r in got}
    assert orjson.loads(orjson.dumps(got)) == got


def test_init_writes_names_from_the_log_and_the_account_escaped(hostile, monkeypatch):
    _, events = hostile
    listed = [{"id": "c1", "name": f"NPS{OSC}\r{RLO}", "metric": "NPS", "type": "transactional",
               "channel": "email", "isActive": True}]  # fmt: skip
    with FakeRetently(api_key=TEST_KEY, campaigns=listed) as fake:
        monkeypatch.setenv("RETENTLY_BASE_URL", fake.url)
        monkeypatch.setenv("RETENTLY_API_KEY", TEST_KEY)
        result = run("init", "-", "--from-log", str(events))
    assert result.exit_code == 0, result.stderr
    assert_nothing_injected(result.stdout)
    assert "\r" not in result.stdout
    for shown in ("NPS\\x1b]0;pwned\\x07\\r\\u202e", "e\\x1b[2J.ndjson", '"Unmapped\\u001b[2J"'):
        assert shown in result.stdout, shown
