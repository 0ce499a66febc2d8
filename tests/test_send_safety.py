"""Safe to leave running: the circuit breaker, the plan before sending, words that say what to
do next, and --summary-json, against the fake server."""

import os
import subprocess
import sys
import time

from click.testing import CliRunner
from conftest import NPS, ROOT, TEST_KEY, ndjson, records, track

from retently_cli.cli import cli
from retently_cli.delivery import BREAKER_THRESHOLD


def _config(tmp_path, **delivery):
    settings = {"batch_size": 1, "concurrency": 1, "max_attempts": 2, "rate_limit": 6000}
    settings.update(delivery)
    path = tmp_path / "c.yaml"
    path.write_text(
        f'campaigns: {{"{NPS}": "Order Completed"}}\n'
        + "".join(f"{key}: {value}\n" for key, value in settings.items())
    )
    return path


def _events(tmp_path, count, name="e.ndjson"):
    path = tmp_path / name
    path.write_bytes(
        ndjson(*(track(message_id=str(i), email=f"u{i}@example.com") for i in range(count)))
    )
    return path


def send(config, *args, input=None):
    return CliRunner().invoke(cli, ["send", "-c", str(config), *args], input=input)


# -- the circuit breaker -------------------------------------------------------------------


def test_a_503_storm_stops_the_run_with_exit_4_and_leaves_the_rest_not_sent(fake_env, tmp_path):
    fake_env.inject(503, times=10_000)
    failed = tmp_path / "failed.ndjson"
    result = send(
        _config(tmp_path), "-o", "ndjson", "--failed", str(failed), str(_events(tmp_path, 40))
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
    again = send(_config(tmp_path), "-o", "ndjson", str(_events(tmp_path, 40)))
    assert again.exit_code == 0, again.stderr
    assert fake_env.survey_count() == 40


def test_fewer_failures_in_a_row_than_the_threshold_do_not_trip_the_breaker(fake_env, tmp_path):
    fake_env.inject(503, times=2 * (BREAKER_THRESHOLD - 1))  # two attempts each, then answers
    result = send(_config(tmp_path), "-o", "ndjson", str(_events(tmp_path, 10)))
    assert result.exit_code == 1, result.stderr  # failures, but the run went on to the end
    got = records(result.stdout)
    assert sum(r["reason"] == "retries_exhausted" for r in got) == BREAKER_THRESHOLD - 1
    assert sum(r["outcome"] == "sent" for r in got) == 10 - (BREAKER_THRESHOLD - 1)


def test_the_server_stopped_mid_run_exits_4_with_the_address_and_a_hint(fake, tmp_path):
    events = _events(tmp_path, 300)
    env = {**os.environ, "RETENTLY_BASE_URL": fake.url, "RETENTLY_API_KEY": TEST_KEY}
    command = [sys.executable, "-m", "retently_cli", "send", "-o", "ndjson"]
    proc = subprocess.Popen(
        [*command, "-c", str(_config(tmp_path, rate_limit=600)), str(events)],
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
