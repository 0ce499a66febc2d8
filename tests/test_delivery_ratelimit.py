"""A rate_limit set higher than the account's: repeated 429s slow the client down."""

import threading

import pytest
from helpers import NPS, TEST_KEY, ndjson, records, run, track
from test_delivery import deliver_all, sender_for, surveys

from retently_cli.delivery import RateLimiter
from retently_cli.fake_server import FakeRetently

SLOWER = "sending slower than rate_limit 6000/min"


def max_in_window(times, window):
    return max(sum(1 for u in times if t <= u < t + window) for t in times)


@pytest.mark.slow
def test_a_rate_limit_ten_times_too_high_slows_down_and_every_survey_is_sent(tmp_path, monkeypatch):
    # Scaled down: the server allows 10 requests a second (600 a minute); the client is set to
    # 6000 a minute, and gives up at the first failed attempt, but a 429 with Retry-After is the
    # server pacing it, not a failure.
    config = tmp_path / "retently.yaml"
    config.write_text(
        f'campaigns:\n  "{NPS}": "Order Completed"\n'
        "batch_size: 1\nrate_limit: 6000\nconcurrency: 4\nmax_attempts: 1\n"
    )
    events = [track(message_id=f"m{i}", email=f"user{i}@example.com") for i in range(30)]
    with FakeRetently(api_key=TEST_KEY, rate_limit_per_minute=10, window_seconds=1.0) as server:
        monkeypatch.setenv("RETENTLY_BASE_URL", server.url)
        monkeypatch.setenv("RETENTLY_API_KEY", TEST_KEY)
        result = run("send", "-c", str(config), "-o", "ndjson", "-", input=ndjson(*events))
        accepted = sorted(t for _, path, status, t, _ in server.requests if status == 200)
        assert server.rate_limited > 0  # the server did push back
        assert server.survey_count() == 30
    assert result.exit_code == 0, result.stderr
    got = records(result.stdout)
    assert [r["outcome"] for r in got] == ["sent"] * 30
    assert max_in_window(accepted, 1.0) <= 10
    assert result.stderr.count(SLOWER) == 1
    assert TEST_KEY not in result.stdout + result.stderr


def test_a_429_halves_the_rate_once_per_burst_and_successes_win_it_back_up_to_the_limit():
    now = [0.0]
    limiter = RateLimiter(600, clock=lambda: now[0])
    stop = threading.Event()
    assert limiter.per_minute == 600
    before = now[0]
    assert limiter.acquire(stop)
    now[0] = 1.0
    assert limiter.slow_down(before) == 300  # the first 429 of a burst halves the rate
    assert limiter.slow_down(before) is None  # others sent before the cut say nothing new
    assert limiter.per_minute == 300
    now[0] = 2.0
    assert limiter.slow_down(2.0) == 150  # a request scheduled after the cut: halve again
    for _ in range(10_000):
        limiter.succeeded()
    assert limiter.per_minute == 600  # never above rate_limit
    for _ in range(30):
        now[0] += 1.0
        limiter.slow_down(now[0])
    assert limiter.per_minute == 1  # a floor: one request a minute


def test_429s_with_retry_after_spare_max_attempts_but_have_a_cap_of_their_own():
    with FakeRetently(api_key=TEST_KEY, fault_retry_after=0) as server:
        server.inject("429", times=2)
        sender = sender_for(server, attempts=1)
        assert all(o.sent and o.attempts == 3 for o in deliver_all(sender, surveys(2)))
        server.inject("429", times=10)
        sender.policy.max_paced = 4
        outcomes = deliver_all(sender, surveys(2))
        assert server.survey_count() == 2  # the first two only
    assert {(o.reason, o.status, o.attempts) for o in outcomes} == {("retries_exhausted", 429, 4)}
    assert "4 of them HTTP 429" in outcomes[0].detail
