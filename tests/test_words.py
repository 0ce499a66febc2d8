"""Refusals and warnings that say what is wrong before anything is sent (issue 11)."""

import os
import pty
import select
import subprocess
import time

import pytest
from helpers import (
    EXAMPLE_CONFIG,
    RETENTLY,
    ROOT,
    TEST_KEY,
    ndjson,
    read_terminal,
    records,
    run,
    send,
    stderr_lines,
    track,
)

from retently_cli.starter import starter_config

# -- --event, --campaign, --since/--until --------------------------------------------------------


def test_an_event_no_campaign_maps_is_refused_with_a_did_you_mean(fake_env):
    result = send("--event", "Order Complete", "-", input=ndjson(track()))
    assert result.exit_code == 2
    assert "--event 'Order Complete': the config maps no campaign to it" in result.stderr
    assert "did you mean 'Order Completed'?" in result.stderr
    assert fake_env.survey_count() == 0


def test_an_unknown_campaign_gets_a_did_you_mean_too():
    result = send("-n", "--campaign", "5e1f9a3c2b7d4e0012ab34ce", "-", input=b"")
    assert result.exit_code == 2
    assert "did you mean '5e1f9a3c2b7d4e0012ab34cd'?" in result.stderr


def test_a_mapped_event_is_accepted():
    result = send("-n", "-o", "ndjson", "--event", "Order Completed", "-", input=ndjson(track()))
    assert result.exit_code == 0, result.stderr
    assert {r["outcome"] for r in records(result.stdout)} == {"dry_run"}


@pytest.mark.parametrize(
    "since, until",
    [("2024-03-02", "2024-03-01"), ("2024-03-01T10:00:00Z", "2024-03-01T10:00:00Z")],
)
def test_since_not_before_until_is_refused(since, until):
    result = send("-n", "--since", since, "--until", until, "-", input=ndjson(track()))
    assert result.exit_code == 2
    assert "--since" in result.stderr and "must be before --until" in result.stderr


# -- contradictory flags --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, names",
    [
        (["--no-ledger", "--ledger", "x.db"], ("--no-ledger", "--ledger")),
        (["-q", "-v"], ("--quiet", "--verbose")),
        (["--no-ledger", "--retry-uncertain"], ("--no-ledger", "--retry-uncertain")),
        (["-o", "ndjson", "--all-rows"], ("--output ndjson", "--all-rows")),
        (["-o", "ndjson", "--max-rows", "5"], ("--output ndjson", "--max-rows")),
    ],
)
def test_contradictory_flags_are_refused(flags, names, tmp_path):
    result = send("-n", *flags, "-", input=ndjson(track()))
    assert result.exit_code == 2
    assert f"{names[0]} and {names[1]} cannot be used together" in result.stderr
    assert not (tmp_path / "x.db").exists()


def test_no_ledger_wins_over_a_ledger_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("RETENTLY_LEDGER", str(tmp_path / "env.db"))
    result = send("-n", "--no-ledger", "-", input=ndjson(track()))
    assert result.exit_code == 0, result.stderr
    assert "cannot be used together" not in result.stderr
    assert not (tmp_path / "env.db").exists()


@pytest.mark.parametrize("command", ["check", "coverage", "campaigns", "init"])
def test_quiet_with_verbose_is_refused_by_every_command(command, tmp_path):
    args = [command, "-q", "-v"]
    if command in ("check", "coverage"):
        args += ["-c", str(EXAMPLE_CONFIG)]
    if command == "init":
        args += [str(tmp_path / "new.yaml")]
    result = run(*args)
    assert result.exit_code == 2
    assert "--quiet and --verbose cannot be used together" in result.stderr
    assert not (tmp_path / "new.yaml").exists()


def test_diff_refuses_quiet_with_verbose():
    config = str(EXAMPLE_CONFIG)
    result = run("diff", "-q", "-v", config, config, "-")
    assert result.exit_code == 2
    assert "--quiet and --verbose cannot be used together" in result.stderr


# -- empty inputs ---------------------------------------------------------------------------------


def test_empty_stdin_gets_a_one_line_warning():
    result = send("-n", "-", input=b"")
    assert result.exit_code == 0
    assert [line for line in stderr_lines(result) if "empty" in line] == [
        "warning: stdin was empty: no events read"
    ]


def test_an_empty_file_gets_a_warning(tmp_path):
    empty = tmp_path / "empty.ndjson"
    empty.write_bytes(b"")
    full = tmp_path / "full.ndjson"
    full.write_bytes(ndjson(track()))
    result = send("-n", str(empty), str(full))
    assert result.exit_code == 0
    assert f"warning: {empty} is empty: no events read" in result.stderr
    assert f"warning: {full}" not in result.stderr


def test_an_empty_folder_gets_a_warning(tmp_path):
    folder = tmp_path / "logs"
    folder.mkdir()
    result = send("-n", str(folder))
    assert result.exit_code == 0
    assert f"warning: {folder} holds no files to read" in result.stderr


def test_a_folder_of_events_gets_no_warning(tmp_path):
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "a.ndjson").write_bytes(ndjson(track()))
    result = send("-n", str(folder))
    assert "warning" not in result.stderr


@pytest.mark.parametrize("command", ["coverage", "diff"])
def test_preview_commands_warn_of_empty_input_too(command):
    config = str(EXAMPLE_CONFIG)
    args = ["coverage", "-c", config, "-"] if command == "coverage" else ["diff", config, config]
    result = run(*args, input=b"")
    assert "warning: stdin was empty: no events read" in result.stderr


def test_quiet_leaves_the_empty_input_warning_out():
    result = send("-n", "-q", "-", input=b"")
    assert result.stderr == ""


# -- the starter's placeholders -------------------------------------------------------------------


@pytest.fixture
def starter(tmp_path):
    path = tmp_path / "retently.yaml"
    path.write_text(starter_config())
    return path


def test_check_refuses_the_starter_placeholders(starter):
    result = run("check", "-c", str(starter))
    assert result.exit_code == 2
    assert f'{starter}:12: campaigns: "YOUR-CAMPAIGN-ID" is the starter\'s placeholder' in (
        result.stderr
    )
    assert f"{starter}:12: campaigns.YOUR-CAMPAIGN-ID: " in result.stderr
    assert '"TODO: Track event names" is the starter\'s placeholder' in result.stderr


def test_check_refuses_a_placeholder_event_under_a_real_campaign(tmp_path):
    path = tmp_path / "retently.yaml"
    path.write_text(starter_config([{"id": "abc123", "name": "NPS", "type": "transactional"}]))
    result = run("check", "-c", str(path))
    assert result.exit_code == 2
    assert "campaigns.abc123: " in result.stderr
    assert "YOUR-CAMPAIGN-ID" not in result.stderr


def test_a_live_send_refuses_the_starter_placeholders(starter, fake_env):
    result = run("send", "-c", str(starter), "-", input=ndjson(track()))
    assert result.exit_code == 2
    assert "is the starter's placeholder" in result.stderr
    assert fake_env.survey_count() == 0


def test_a_dry_run_only_warns_of_the_starter_placeholders(starter):
    result = run("send", "-n", "-c", str(starter), "-", input=ndjson(track()))
    assert result.exit_code == 0
    assert "warning: " in result.stderr and "is the starter's placeholder" in result.stderr


# -- stdin from a terminal ------------------------------------------------------------------------


def _on_a_terminal_stdin(args, extra_env=None):
    """Runs retently with stdin on a pseudo-terminal, ends the input with Ctrl-D once it is
    asked for, and returns (exit code, stderr)."""
    leader, follower = pty.openpty()
    env = {**os.environ, "NO_COLOR": "1", **(extra_env or {})}
    proc = subprocess.Popen(
        [*RETENTLY, *args],
        stdin=follower,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    os.close(follower)
    try:
        seen = b""
        deadline = time.monotonic() + 30
        while b"Ctrl-D" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stderr], [], [], 0.5)
            if ready:
                chunk = os.read(proc.stderr.fileno(), 4096)
                if not chunk:
                    break
                seen += chunk
        os.write(leader, b"\x04")
        _, rest = proc.communicate(timeout=30)  # a run that reads on past the Ctrl-D fails here
        return proc.returncode, (seen + rest).decode()
    finally:
        proc.kill()
        os.close(leader)


@pytest.mark.slow
def test_send_says_it_reads_stdin_from_a_terminal():
    code, stderr = _on_a_terminal_stdin(["send", "-n", "-c", str(EXAMPLE_CONFIG)])
    assert stderr.startswith("reading events from stdin (Ctrl-D to end)\n")
    assert code == 0
    assert "warning: stdin was empty: no events read" in stderr


@pytest.mark.slow
def test_coverage_says_it_reads_stdin_from_a_terminal():
    code, stderr = _on_a_terminal_stdin(["coverage", "-c", str(EXAMPLE_CONFIG), "-"])
    assert "reading events from stdin (Ctrl-D to end)" in stderr
    assert code == 0


@pytest.mark.slow
def test_no_terminal_note_when_stdin_is_a_pipe():
    result = subprocess.run(
        [*RETENTLY, "send", "-n", "-c", str(EXAMPLE_CONFIG)],
        input=ndjson(track()),
        capture_output=True,
        cwd=ROOT,
        env={**os.environ, "RETENTLY_API_KEY": TEST_KEY},
    )
    assert result.returncode == 0
    assert b"Ctrl-D" not in result.stderr


# -- the table at 80 and 200 columns --------------------------------------------------------------


def _table_lines(stderr: str) -> list[str]:
    lines = stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("source"))
    end = lines.index("", start) if "" in lines[start:] else len(lines)
    return lines[start:end]


def _uncertain_run(fake_env, monkeypatch, columns):
    monkeypatch.setenv("COLUMNS", str(columns))
    fake_env.inject("drop_after")  # delivered, but the answer never comes: uncertain
    long_id = "a-message-id-far-longer-than-any-column-0123456789"
    data = ndjson(
        track(event="Onboarding Finished", message_id=long_id, email="someone.long@example.com")
    )
    return send("--no-ledger", "-", input=data)


def test_at_80_columns_the_outcome_is_whole_and_ids_give_way(fake_env, monkeypatch):
    result = _uncertain_run(fake_env, monkeypatch, 80)
    table = _table_lines(result.stderr)
    header = table[0].split()
    assert header == ["source", "event", "email", "outcome", "reason"]
    assert all(len(line) <= 80 for line in table)
    row = table[1]
    assert "uncertain" in row.split()
    assert "connection_lost" in row


def test_a_wide_terminal_shows_every_column_and_gives_reason_the_room(fake_env, monkeypatch):
    result = _uncertain_run(fake_env, monkeypatch, 200)
    table = _table_lines(result.stderr)
    assert table[0].split() == [
        "source", "messageId", "event", "email", "campaign", "outcome", "reason",
    ]  # fmt: skip
    row = table[1]
    assert "uncertain" in row.split() and "someone.long@example.com" in row
    assert "connection_lost: " in row
    assert len(row.split(" uncertain ", 1)[1].strip()) >= 60  # the room goes to the reason


def test_between_the_two_the_campaign_stays_longer_than_the_message_id(fake_env, monkeypatch):
    result = _uncertain_run(fake_env, monkeypatch, 90)
    header = _table_lines(result.stderr)[0].split()
    assert "campaign" in header and "messageId" not in header


# -- colour, cursor codes and the progress line ---------------------------------------------------


def _on_a_terminal(args, env_extra, env_drop=()):
    """stderr (and stdout) on a pseudo-terminal; returns (exit code, what the terminal got)."""
    leader, follower = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", **env_extra}
    for name in ("COLUMNS", *env_drop):
        env.pop(name, None)
    proc = subprocess.Popen(
        [*RETENTLY, *args],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        env=env,
        cwd=ROOT,
    )
    os.close(follower)
    try:
        seen = read_terminal(leader, proc, timeout=60)
        return proc.returncode, seen
    finally:
        proc.kill()
        os.close(leader)


@pytest.fixture
def slow_events(tmp_path):
    """A send that lasts long enough for the progress line to be drawn."""
    config = tmp_path / "c.yaml"
    config.write_text(
        'campaigns: {"5e1f9a3c2b7d4e0012ab34cd": "Order Completed"}\n'
        "batch_size: 1\nrate_limit: 1200\nconcurrency: 1\n"
    )
    events = tmp_path / "e.ndjson"
    events.write_bytes(
        ndjson(*(track(message_id=str(i), email=f"u{i}@example.com") for i in range(20)))
    )
    return config, events


def _live_env(fake):
    return {"RETENTLY_BASE_URL": fake.url, "RETENTLY_API_KEY": TEST_KEY}


@pytest.mark.slow
def test_no_color_means_no_escape_codes_at_all_yet_a_progress_line(fake, slow_events):
    config, events = slow_events
    env = {**_live_env(fake), "NO_COLOR": "1"}
    code, seen = _on_a_terminal(["send", "--no-ledger", "-c", str(config), str(events)], env)
    assert code == 0
    assert b"surveys/s" in seen  # the progress line, redrawn with a carriage return
    assert b"\x1b" not in seen
    assert b"uncertain" not in seen and b"Summary" in seen


@pytest.mark.slow
def test_color_never_is_no_color_too(fake, slow_events):
    config, events = slow_events
    args = ["send", "--color", "never", "--no-ledger", "-c", str(config), str(events)]
    code, seen = _on_a_terminal(args, _live_env(fake), env_drop=("NO_COLOR",))
    assert code == 0
    assert b"surveys/s" in seen and b"\x1b" not in seen


@pytest.mark.slow
def test_a_terminal_gets_colour_and_the_bar_by_default(fake, slow_events):
    config, events = slow_events
    args = ["send", "--no-ledger", "-c", str(config), str(events)]
    code, seen = _on_a_terminal(args, _live_env(fake), env_drop=("NO_COLOR",))
    assert code == 0
    assert b"\x1b[" in seen and b"surveys/s" in seen


@pytest.mark.slow
def test_no_progress_turns_the_bar_off(fake, slow_events):
    config, events = slow_events
    args = ["send", "--no-progress", "--no-ledger", "-c", str(config), str(events)]
    code, seen = _on_a_terminal(args, {**_live_env(fake), "NO_COLOR": "1"})
    assert code == 0
    assert b"surveys/s" not in seen and b"\r\r" not in seen and b"Summary" in seen


@pytest.mark.slow
def test_check_on_a_terminal_under_no_color_prints_no_codes():
    code, seen = _on_a_terminal(["check", "-c", str(EXAMPLE_CONFIG)], {"NO_COLOR": "1"})
    assert code == 0 and b"campaign -> events" in seen
    assert b"\x1b" not in seen


def test_color_always_colours_a_pipe_even_under_no_color_but_draws_no_bar(fake_env):
    result = send("--color", "always", "-n", "-", input=ndjson(track()))
    assert result.exit_code == 0
    assert "\x1b[" in result.stderr and "surveys/s" not in result.stderr


def test_a_pipe_gets_no_codes_by_default(fake_env, monkeypatch):
    monkeypatch.delenv("NO_COLOR")
    result = send("-", input=ndjson(track()))
    assert result.exit_code == 0
    assert "\x1b" not in result.stderr


# -- shell completion -----------------------------------------------------------------------------


def _complete(words: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "_RETENTLY_COMPLETE": "bash_complete",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split()) - 1),
    }
    return subprocess.run([*RETENTLY], capture_output=True, env=env, cwd=ROOT)


@pytest.mark.slow
def test_completion_offers_commands_and_the_new_options():
    assert "plain,send" in _complete("retently se").stdout.decode().splitlines()
    assert "plain,--color" in _complete("retently send --col").stdout.decode().splitlines()


@pytest.mark.slow
def test_completion_is_not_refused_over_options_that_contradict():
    completed = _complete("retently send -q -v --no-pro")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.decode().splitlines() == ["plain,--no-progress"]


@pytest.mark.slow
def test_init_from_a_log_on_stdin_says_so_once(tmp_path):
    target = tmp_path / "retently.yaml"
    code, stderr = _on_a_terminal_stdin(["init", str(target), "--from-log", "-"])
    assert code == 0, stderr
    assert stderr.count("reading events from stdin (Ctrl-D to end)") == 1
    assert target.exists()


@pytest.mark.slow
def test_an_empty_no_color_is_no_request():
    code, seen = _on_a_terminal(["check", "-c", str(EXAMPLE_CONFIG)], {"NO_COLOR": ""})
    assert code == 0 and b"\x1b[1m" in seen  # the headings are bold: NO_COLOR needs a value


@pytest.mark.parametrize(
    "command",
    [
        ["send", "-n", "-o", "ndjson", "-c", EXAMPLE_CONFIG],
        ["send", "-n", "-c", EXAMPLE_CONFIG],
        ["diff", EXAMPLE_CONFIG, EXAMPLE_CONFIG],
        ["coverage", "-c", EXAMPLE_CONFIG],
    ],
    ids=["send-ndjson", "send-table", "diff", "coverage"],
)
def test_quiet_leaves_out_what_a_walk_passes_over(tmp_path, command):
    """-q prints only errors: a file that is not JSON and a link back up are passed over in
    silence (they were printed whatever -q said)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "notes.txt").write_text("not json\n")
    (logs / "b.ndjson").write_bytes(ndjson({"type": "page", "messageId": "p1"}))
    (logs / "loop").symlink_to(logs)
    loud = run(*command, logs)
    assert "does not start like JSON" in loud.stderr and "read already" in loud.stderr
    quiet = run(*command, "-q", logs)
    assert quiet.stderr == ""
    assert quiet.exit_code == loud.exit_code
