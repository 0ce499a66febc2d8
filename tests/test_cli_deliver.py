"""retently send (for real), check --online and campaigns, against the fake server."""

import os
import pty
import select
import signal
import subprocess
import time

import orjson
import pytest
from helpers import (
    CSAT,
    EXAMPLE_CONFIG,
    NPS,
    RETENTLY,
    ROOT,
    TEST_KEY,
    ended_within,
    ndjson,
    read_terminal,
    records,
    run,
    send,
    track,
)


def test_send_delivers_and_reports_each_event(fake_env):
    data = ndjson(
        track(message_id="a", email="ann@example.com"),
        track(event="Onboarding Finished", message_id="b", email="bob@example.com"),
        {"type": "page", "messageId": "p"},
    )
    result = send("-o", "ndjson", "-", input=data)
    assert result.exit_code == 0, result.stderr
    got = records(result.stdout)
    sent = [r for r in got if r["outcome"] == "sent"]
    assert sorted((r["line"], r["campaign"]) for r in sent) == [
        (1, NPS),
        (1, CSAT),
        (2, "63cd4e5f6a7b8c0022de56ef"),
    ]
    assert all(r["status"] == 200 and r["attempts"] == 1 for r in sent)
    assert all(r["result"] == "created" for r in sent if r["line"] == 2)
    assert "request" not in sent[0]
    assert [r["reason"] for r in got if r["outcome"] == "skipped"] == ["not_track"]
    assert fake_env.survey_count() == 3
    assert "sent" in result.stderr and "Summary" in result.stderr


@pytest.mark.slow
def test_the_example_export_is_delivered_once_and_a_rerun_sends_nothing(fake_env):
    dry = records(send("-n", "-o", "ndjson", str(ROOT / "examples")).stdout)
    first = send("-o", "ndjson", str(ROOT / "examples"))
    assert first.exit_code == 1  # the example has three malformed lines
    sent = [r for r in records(first.stdout) if r["outcome"] == "sent"]
    assert len(sent) == sum(r["outcome"] == "dry_run" for r in dry) == fake_env.survey_count()
    again = records(send("-o", "ndjson", str(ROOT / "examples")).stdout)
    assert [r["reason"] for r in again if r["campaign"] and r["outcome"] == "skipped"].count(
        "already_sent"
    ) == len(sent)
    assert fake_env.survey_count() == len(sent)


def test_a_refused_key_stops_the_run_with_exit_3(fake, monkeypatch):
    monkeypatch.setenv("RETENTLY_BASE_URL", fake.url)
    monkeypatch.setenv("RETENTLY_API_KEY", "wrong-key-value")
    events = ndjson(*(track(message_id=str(i), email=f"u{i}@example.com") for i in range(400)))
    result = send("-o", "ndjson", "-", input=events)
    assert result.exit_code == 3
    assert fake.survey_count() == 0 and len(fake.requests) <= 4
    assert "Retently refused the API key (401/403): nothing more was sent" in result.stderr
    assert "wrong-key-value" not in result.stderr + result.stdout
    assert {r["reason"] for r in records(result.stdout) if r["outcome"] == "failed"} <= {
        "unauthorized",
        "not_sent",
    }


def test_vv_logs_requests_and_bodies_but_never_the_key(fake_env):
    fake_env.inject("503", times=1)
    result = send("-vv", "-", input=ndjson(track()))
    assert result.exit_code == 0
    assert "POST /api/v2/survey 503" in result.stderr
    assert "POST /api/v2/survey 200" in result.stderr
    assert '"subscribers"' in result.stderr  # -vv shows bodies
    assert TEST_KEY not in result.stderr and TEST_KEY not in result.stdout


def test_plain_http_to_another_host_is_refused_before_reading(monkeypatch):
    monkeypatch.setenv("RETENTLY_API_KEY", TEST_KEY)
    monkeypatch.setenv("RETENTLY_BASE_URL", "http://retently.example.com")
    result = send("-o", "ndjson", "-", input=ndjson(track()))
    assert result.exit_code == 2 and result.stdout == ""
    assert "$RETENTLY_BASE_URL" in result.stderr and "plain http" in result.stderr


def test_api_key_file_and_its_precedence(fake, monkeypatch, tmp_path):
    monkeypatch.setenv("RETENTLY_BASE_URL", fake.url)
    key_file = tmp_path / "key"
    key_file.write_text(TEST_KEY + "\n")
    config = tmp_path / "c.yaml"
    config.write_text(f'campaigns: {{"{NPS}": "Order Completed"}}\n')
    events = tmp_path / "e.ndjson"
    events.write_bytes(ndjson(track()))
    ok = run("send", "-c", str(config), "--api-key-file", str(key_file), "-v", str(events))
    assert ok.exit_code == 0, ok.stderr
    assert f"API key from --api-key-file {key_file}" in ok.stderr
    from_stdin = run(
        "send", "-c", str(config), "--no-ledger", "--api-key-file", "-", str(events), input=TEST_KEY
    )
    assert from_stdin.exit_code == 0 and fake.survey_count() == 2
    clash = run("send", "-c", str(config), "--api-key-file", "-", "-", input=TEST_KEY)
    assert clash.exit_code == 2 and "stdin already carries the events" in clash.stderr
    monkeypatch.setenv("RETENTLY_API_KEY", TEST_KEY)
    env = run("send", "-c", str(config), "--no-ledger", "-v", str(events))
    assert env.exit_code == 0 and "API key from $RETENTLY_API_KEY" in env.stderr


def test_a_world_readable_config_with_a_literal_key_is_warned_about(fake, monkeypatch, tmp_path):
    monkeypatch.setenv("RETENTLY_BASE_URL", fake.url)
    config = tmp_path / "c.yaml"
    config.write_text(f'api_key: {TEST_KEY}\ncampaigns: {{"{NPS}": "Order Completed"}}\n')
    config.chmod(0o644)
    result = run("send", "-c", str(config), "-", input=ndjson(track()))
    assert "holds a literal API key and other users can read it" in result.stderr
    assert TEST_KEY not in result.stderr
    config.chmod(0o600)
    result = run("send", "-c", str(config), "-", input=ndjson(track()))
    assert "literal API key" not in result.stderr


def test_check_online_verifies_the_key_and_the_campaigns(fake_env, tmp_path):
    ok = run("check", "--online", "-c", str(EXAMPLE_CONFIG))
    assert ok.exit_code == 0, ok.stderr
    assert "online: key accepted, 3 campaigns found" in ok.stderr
    config = tmp_path / "c.yaml"
    config.write_text(
        f'campaigns:\n  "{NPS}": "A"\n  "6a0000000000000000000001": "B"\n  "nope": "C"\n'
    )
    bad = run("check", "--online", "-c", str(config))
    assert bad.exit_code == 1
    assert "retently: campaigns.nope: no such campaign in this account" in bad.stderr
    assert "warning: campaigns.6a0000000000000000000001: is not active" in bad.stderr
    assert "is regular, not transactional" in bad.stderr


def test_check_online_with_a_refused_key_exits_3(fake, monkeypatch):
    monkeypatch.setenv("RETENTLY_BASE_URL", fake.url)
    monkeypatch.setenv("RETENTLY_API_KEY", "bad-key-123")
    result = run("check", "--online", "-c", str(EXAMPLE_CONFIG))
    assert result.exit_code == 3 and "refused the API key" in result.stderr


def test_campaigns_lists_the_account_as_a_table_or_json(fake_env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./retently.yaml: the config is optional here
    table = run("campaigns")
    assert table.exit_code == 0, table.stderr
    assert "Post-purchase NPS" in table.stdout and "transactional" in table.stdout
    listed = orjson.loads(run("campaigns", "-o", "json").stdout)
    assert [c["id"] for c in listed][:2] == [NPS, CSAT]
    fake_env.inject("503", times=1)
    assert run("campaigns", "-o", "json").exit_code == 0  # retried


@pytest.mark.slow
def test_records_stream_while_stdin_stays_open_and_surveys_go_out(fake_env):
    env = {**os.environ, "NO_COLOR": "1"}
    proc = subprocess.Popen(
        [*RETENTLY, "send", "-o", "ndjson", "-c", str(EXAMPLE_CONFIG)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    try:
        proc.stdin.write(orjson.dumps(track(event="Onboarding Finished")) + b"\n")
        proc.stdin.flush()
        line = _readline(proc.stdout, timeout=15)  # the partial batch went out on its own
        assert orjson.loads(line)["outcome"] == "sent"
        assert fake_env.survey_count() == 1
        proc.stdin.close()
        assert proc.wait(timeout=15) == 0
    finally:
        proc.kill()


@pytest.mark.slow
def test_a_progress_bar_only_on_a_terminal(fake_env, tmp_path):
    events = tmp_path / "e.ndjson"
    events.write_bytes(
        ndjson(*(track(message_id=str(i), email=f"u{i}@example.com") for i in range(50)))
    )
    leader, follower = pty.openpty()
    env = {**os.environ, "NO_COLOR": "1", "TERM": "xterm"}
    env.pop("COLUMNS", None)
    proc = subprocess.Popen(
        [*RETENTLY, "send", "-c", str(EXAMPLE_CONFIG), str(events)],
        stderr=follower,
        stdout=subprocess.DEVNULL,
        env=env,
        cwd=ROOT,
    )
    os.close(follower)
    seen = read_terminal(leader, proc)
    assert proc.returncode == 0
    assert b"surveys/s" in seen  # the progress line was drawn...
    plain = subprocess.run(
        [*RETENTLY, "send", "-c", str(EXAMPLE_CONFIG), str(events)],
        capture_output=True,
        env=env,
        cwd=ROOT,
    )
    assert b"surveys/s" not in plain.stderr  # ...and not when stderr is a file


def _readline(stream, timeout):
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, "no record arrived in time"
    return stream.readline()


@pytest.mark.slow
def test_ctrl_c_during_a_send_reports_every_event_and_exits_130(fake, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(
        f'campaigns: {{"{NPS}": "Order Completed"}}\nbatch_size: 1\nrate_limit: 120\n'
    )
    events = tmp_path / "e.ndjson"
    events.write_bytes(
        ndjson(*(track(message_id=str(i), email=f"u{i}@example.com") for i in range(200)))
    )
    env = {
        **os.environ,
        "NO_COLOR": "1",
        "RETENTLY_BASE_URL": fake.url,
        "RETENTLY_API_KEY": TEST_KEY,
    }
    proc = subprocess.Popen(
        [
            *RETENTLY,
            "send",
            "-o",
            "ndjson",
            "-c",
            str(config),
            str(events),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    deadline = time.monotonic() + 20
    while fake.survey_count() < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = ended_within(proc, 30)
    assert proc.returncode == 130, err
    got = records(out)
    sent = [r for r in got if r["outcome"] == "sent"]
    assert len(sent) == fake.survey_count() >= 3
    assert all(r["reason"] == "not_sent" for r in got if r["outcome"] == "failed")
    assert len({r["line"] for r in got}) == len(got)  # each event read once, reported once
    assert b"interrupted" in err and b"Traceback" not in err
