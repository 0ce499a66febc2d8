"""Safe to leave running: the circuit breaker, the plan before sending, words that say what to
do next, and --summary-json, against the fake server."""

import os
import pty
import signal
import subprocess
import time

import orjson
import pytest
from helpers import (
    NPS,
    RETENTLY,
    ROOT,
    TEST_KEY,
    delivery_config,
    ended_within,
    ndjson,
    numbered_events,
    read_terminal,
    records,
    run,
    track,
)

from retently_cli.delivery import BREAKER_THRESHOLD


def send(config, *args, input=None):
    return run("send", "-c", str(config), *args, input=input)


# -- the circuit breaker -------------------------------------------------------------------


@pytest.mark.slow
def test_a_503_storm_stops_the_run_with_exit_4_and_leaves_the_rest_not_sent(fake_env, tmp_path):
    fake_env.inject(503, times=10_000)
    failed = tmp_path / "failed.ndjson"
    result = send(
        delivery_config(tmp_path),
        "-o",
        "ndjson",
        "--failed",
        str(failed),
        str(numbered_events(tmp_path, 40)),
    )
    assert result.exit_code == 4, result.stderr
    got = records(result.stdout)
    gave_up = [r for r in got if r["reason"] == "retries_exhausted"]
    assert len(gave_up) == BREAKER_THRESHOLD  # only these were tried, twice each
    assert len(fake_env.requests) == 2 * BREAKER_THRESHOLD
    assert all(r["outcome"] == "failed" for r in got)
    not_sent = [r for r in got if r["reason"] == "not_sent"]
    assert len(gave_up) + len(not_sent) == len(got)
    assert fake_env.survey_count() == 0
    assert "is unavailable" in result.stderr and "HTTP 503" in result.stderr
    assert f"the API at {fake_env.url}" in result.stderr
    assert "Re-run the same command once it is back" in result.stderr
    # Dead letters hold what was tried; what never was is left to the re-run.
    assert len(failed.read_text().splitlines()) == BREAKER_THRESHOLD
    # Once the API is back, the same command sends the rest.
    fake_env.reset()
    again = send(delivery_config(tmp_path), "-o", "ndjson", str(numbered_events(tmp_path, 40)))
    assert again.exit_code == 0, again.stderr
    assert fake_env.survey_count() == 40


@pytest.mark.slow
def test_fewer_failures_in_a_row_than_the_threshold_do_not_trip_the_breaker(fake_env, tmp_path):
    fake_env.inject(503, times=2 * (BREAKER_THRESHOLD - 1))  # two attempts each, then answers
    result = send(delivery_config(tmp_path), "-o", "ndjson", str(numbered_events(tmp_path, 10)))
    assert result.exit_code == 1, result.stderr  # failures, but the run went on to the end
    got = records(result.stdout)
    assert sum(r["reason"] == "retries_exhausted" for r in got) == BREAKER_THRESHOLD - 1
    assert sum(r["outcome"] == "sent" for r in got) == 10 - (BREAKER_THRESHOLD - 1)


@pytest.mark.slow
def test_the_server_stopped_mid_run_exits_4_with_the_address_and_a_hint(fake, tmp_path):
    events = numbered_events(tmp_path, 300)
    env = {**os.environ, "RETENTLY_BASE_URL": fake.url, "RETENTLY_API_KEY": TEST_KEY}
    command = [*RETENTLY, "send", "-o", "ndjson"]
    proc = subprocess.Popen(
        [*command, "-c", str(delivery_config(tmp_path, rate_limit=600)), str(events)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    deadline = time.monotonic() + 20
    while fake.survey_count() < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    fake.stop()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 4, err
    got = records(out)
    sent = [r for r in got if r["outcome"] == "sent"]
    assert len(sent) == fake.survey_count() >= 3
    assert len(got) < 300  # it stopped reading: the rest is left to the re-run
    assert {r["reason"] for r in got if r["outcome"] != "sent"} <= {
        "retries_exhausted", "not_sent", "connection_lost",
    }  # fmt: skip
    text = err.decode()
    assert f"cannot reach {fake.url}: connection refused; check base_url or your network" in text
    assert "ConnectError" not in text and "Traceback" not in text


# -- the plan ------------------------------------------------------------------------------


def _mixed(tmp_path):
    """Five surveys for one campaign, two of them to the same email (never one request)."""
    emails = ["a@example.com", "b@example.com", "a@example.com", "c@example.com", "d@example.com"]
    path = tmp_path / "mixed.ndjson"
    path.write_bytes(ndjson(*(track(message_id=f"m{i}", email=e) for i, e in enumerate(emails))))
    return path


def test_a_live_send_from_files_shows_its_plan_and_proceeds_when_not_on_a_terminal(
    fake_env, tmp_path
):
    config, events = delivery_config(tmp_path, batch_size=2, rate_limit=150), _mixed(tmp_path)
    ledger = tmp_path / "ledger.sqlite3"
    first = send(config, "--ledger", str(ledger), str(events))
    assert first.exit_code == 0, first.stderr
    assert "Plan: 5 surveys in 3 requests (batch_size 2), about 1 s at rate_limit 150/min" in (
        first.stderr
    )
    assert f"  {NPS}: 5 surveys" in first.stderr
    assert f"  API: {fake_env.url}" in first.stderr
    assert f"  ledger: {ledger} (new: no earlier run is known)" in first.stderr
    assert len(fake_env.requests) == 3  # the plan's count is the run's
    assert fake_env.survey_count() == 5
    again = send(config, "--ledger", str(ledger), str(events))
    assert "Plan: nothing to send" in again.stderr
    assert "already sent by earlier runs: 5" in again.stderr
    assert f"  ledger: {ledger} (holding 5 sent, 0 uncertain)" in again.stderr
    assert "Done: the 5 surveys this input holds were all sent by earlier runs" in again.stderr
    assert again.exit_code == 0 and fake_env.survey_count() == 5


def test_a_filtered_rerun_says_done_of_its_selection_only(fake_env, tmp_path):
    config, events = delivery_config(tmp_path), tmp_path / "two.ndjson"
    early = {**track(message_id="m1"), "timestamp": "2026-01-01T00:00:00Z"}
    late = {**track(message_id="m2", email="bo@example.com"), "timestamp": "2026-03-01T00:00:00Z"}
    events.write_bytes(ndjson(early, late))
    ledger = tmp_path / "ledger.sqlite3"
    assert (
        send(config, "--ledger", str(ledger), "--until", "2026-02-01", str(events)).exit_code == 0
    )
    again = send(config, "--ledger", str(ledger), "--until", "2026-02-01", str(events))
    assert fake_env.survey_count() == 1 and again.exit_code == 0
    assert "Done: the 1 surveys this selection holds were all sent by earlier runs" in again.stderr
    assert "this input holds" not in again.stderr  # the late event waits beyond --until


def test_the_dry_run_names_each_surveys_request_and_counts_the_requests(tmp_path):
    config, events = delivery_config(tmp_path, batch_size=2), _mixed(tmp_path)
    result = send(config, "-n", "-o", "ndjson", str(events))
    got = [r for r in records(result.stdout) if r["outcome"] == "dry_run"]
    batches = {}
    for r in got:
        batches.setdefault(r["request"]["batch"], []).append(r["email"])
    assert all(len(emails) == len(set(emails)) <= 2 for emails in batches.values())
    assert sorted(batches) == [1, 2, 3]
    assert "A live send would take 3 requests (batch_size 2)" in result.stderr


def test_events_from_stdin_are_not_planned(fake_env, tmp_path):
    result = send(delivery_config(tmp_path), "-", input=_mixed(tmp_path).read_bytes())
    assert result.exit_code == 0, result.stderr
    assert "events from stdin cannot be planned: sending as they come" in result.stderr
    assert "Plan:" not in result.stderr


def _on_a_terminal(fake, tmp_path, *args, answer=None):
    """``send`` with stdin and stderr on a pseudo-terminal; ``answer`` is typed at the
    question. The stderr seen, and the exit code."""
    leader, follower = pty.openpty()
    env = {**os.environ, "RETENTLY_BASE_URL": fake.url, "RETENTLY_API_KEY": TEST_KEY}
    command = [*RETENTLY, "send", "-c", str(delivery_config(tmp_path))]
    proc = subprocess.Popen(
        [*command, *args, str(_mixed(tmp_path))],
        stdin=follower,
        stderr=follower,
        stdout=subprocess.DEVNULL,
        env=env,
        cwd=ROOT,
    )
    os.close(follower)
    seen = read_terminal(leader, proc, answer=answer)
    os.close(leader)
    return seen.decode(errors="replace"), proc.returncode


@pytest.mark.slow
def test_on_a_terminal_the_plan_asks_and_no_sends_nothing(fake_env, tmp_path):
    err, code = _on_a_terminal(fake_env, tmp_path, answer=b"n\n")
    assert "Send 5 surveys? [y/N]" in err
    assert "nothing was sent" in err
    assert code == 1 and fake_env.survey_count() == 0


@pytest.mark.slow
def test_on_a_terminal_yes_at_the_question_sends(fake_env, tmp_path):
    err, code = _on_a_terminal(fake_env, tmp_path, answer=b"y\n")
    assert "Send 5 surveys? [y/N]" in err
    assert code == 0, err
    assert fake_env.survey_count() == 5


@pytest.mark.slow
def test_on_a_terminal_dash_y_sends_without_asking(fake_env, tmp_path):
    err, code = _on_a_terminal(fake_env, tmp_path, "-y")
    assert "Plan: 5 surveys" in err and "[y/N]" not in err
    assert code == 0, err
    assert fake_env.survey_count() == 5


# -- words that say what to do next --------------------------------------------------------


def test_uncertain_surveys_come_with_the_commands_that_settle_them(fake_env, tmp_path):
    fake_env.inject("drop_after")
    ledger = tmp_path / "my ledger.sqlite3"
    result = send(
        delivery_config(tmp_path), "--ledger", str(ledger), str(numbered_events(tmp_path, 3))
    )
    assert result.exit_code == 1, result.stderr
    err = result.stderr
    assert "1 survey is uncertain: it may have been delivered." in err
    where = f"--ledger '{ledger}'"
    assert f"retently ledger resolve --sent --all-uncertain {where}" in err
    assert f"retently ledger resolve --not-sent --all-uncertain {where}" in err
    assert "--retry-uncertain" in err


@pytest.mark.slow
def test_ctrl_c_says_how_to_resume_and_the_summary_json_is_written(fake, tmp_path):
    summary = tmp_path / "summary.json"
    env = {**os.environ, "RETENTLY_BASE_URL": fake.url, "RETENTLY_API_KEY": TEST_KEY}
    config = delivery_config(tmp_path, rate_limit=120)
    proc = subprocess.Popen(
        [*RETENTLY, "send", "-c", str(config), "--summary-json",
         str(summary), str(numbered_events(tmp_path, 200))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while fake.survey_count() < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = ended_within(proc, 30)
    assert proc.returncode == 130, err
    assert b"re-run the same command to resume; " in err
    assert b"surveys not yet sent" in err
    written = orjson.loads(summary.read_bytes())
    assert written["exit_code"] == 130 and written["interrupted"] is True
    assert written["outcomes"]["sent"] == fake.survey_count()


# -- --summary-json ------------------------------------------------------------------------


def test_summary_json_holds_the_counts_exit_code_and_timings(fake_env, tmp_path):
    summary = tmp_path / "s.json"
    result = send(
        delivery_config(tmp_path), "--summary-json", str(summary), str(numbered_events(tmp_path, 4))
    )
    assert result.exit_code == 0, result.stderr
    written = orjson.loads(summary.read_bytes())
    assert written["exit_code"] == 0 and written["outcomes"] == {"sent": 4}
    assert written["surveys_per_campaign"] == {NPS: 4} and written["requests"] == 4
    assert written["plan"] == {"surveys": 4, "requests": 4, "already_sent": 0, "uncertain": 0}
    assert written["duration_s"] >= 0 and written["started_at"] <= written["ended_at"]
    assert TEST_KEY not in summary.read_text()


@pytest.mark.slow
def test_summary_json_on_stdout_after_a_usage_error_and_a_breaker_stop(fake_env, tmp_path):
    events = str(numbered_events(tmp_path, 20))
    refused = send(delivery_config(tmp_path), "--summary-json", "-", "--campaign", "nope", events)
    assert refused.exit_code == 2
    assert orjson.loads(refused.stdout)["exit_code"] == 2
    fake_env.inject(503, times=10_000)
    summary = tmp_path / "s.json"
    stopped = send(delivery_config(tmp_path), "--summary-json", str(summary), events)
    assert stopped.exit_code == 4
    written = orjson.loads(summary.read_bytes())
    assert written["exit_code"] == 4 and "503" in written["api_unavailable"]
    assert written["reasons"]["failed"]["retries_exhausted"] == BREAKER_THRESHOLD


def test_summary_json_on_stdout_is_refused_when_stdout_carries_records(tmp_path):
    result = send(
        delivery_config(tmp_path), "-n", "-o", "ndjson", "--summary-json", "-", "-", input=b""
    )
    assert result.exit_code == 2
    assert "--summary-json -: stdout already carries the records" in result.stderr


@pytest.mark.slow
def test_transport_errors_name_the_address_and_what_to_check(tmp_path, monkeypatch):
    monkeypatch.setenv("RETENTLY_API_KEY", TEST_KEY)  # $RETENTLY_BASE_URL: nothing listens
    hint = "cannot reach http://127.0.0.1:9: connection refused; check base_url or your network"
    online = run("check", "--online", "-c", str(delivery_config(tmp_path)))
    assert online.exit_code == 1 and hint in online.stderr
    result = send(
        delivery_config(tmp_path, max_attempts=1), "-o", "ndjson", str(numbered_events(tmp_path, 1))
    )
    (record,) = records(result.stdout)
    assert record["reason"] == "retries_exhausted"
    assert record["detail"] == f"1 attempt: {hint}"
    assert "ConnectError" not in result.stdout + result.stderr + online.stderr


@pytest.mark.slow
def test_ctrl_d_at_the_question_sends_nothing(fake_env, tmp_path):
    err, code = _on_a_terminal(fake_env, tmp_path, answer=b"\x04")
    assert "[y/N]" in err and "nothing was sent" in err
    assert code == 1 and fake_env.survey_count() == 0
