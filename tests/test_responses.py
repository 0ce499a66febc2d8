"""What a 2xx answer to POST /api/v2/survey means, through a real send against the fake
server: strict with what can be seen, never reporting a failure as sent (issue 12)."""

import pytest
from helpers import EXAMPLE_CONFIG, NPS, TEST_KEY, ndjson, records, run, track

from retently_cli.client import Answer
from retently_cli.fake_server import FakeRetently

EVENTS = ndjson(*(track(message_id=f"m{i}", email=f"user{i}@example.com") for i in range(3)))


@pytest.fixture
def server(monkeypatch, request):
    options = getattr(request, "param", {})
    with FakeRetently(api_key=TEST_KEY, **options) as fake:
        monkeypatch.setenv("RETENTLY_BASE_URL", fake.url)
        monkeypatch.setenv("RETENTLY_API_KEY", TEST_KEY)
        yield fake


def send(tmp_path, *args):
    ledger = tmp_path / "ledger.sqlite3"
    result = run(
        "send", "-c", str(EXAMPLE_CONFIG), "--ledger", str(ledger), "-o", "ndjson",
        "--event", "Order Completed", "--campaign", NPS, *args, "-",
        input=EVENTS,
    )  # fmt: skip
    return result, [r for r in records(result.stdout) if r["outcome"] != "skipped"]


def test_a_2xx_whose_envelope_code_is_400_or_more_is_a_failure(server, tmp_path):
    server.inject("envelope_error")
    result, got = send(tmp_path)
    assert result.exit_code == 1, result.output
    assert [r["outcome"] for r in got] == ["failed"] * 3
    assert {r["reason"] for r in got} == {"rejected"}
    assert {r["status"] for r in got} == {200}
    assert got[0]["detail"] == "HTTP 200 with code 422: The given data was invalid."
    assert server.survey_count() == 0
    # the ledger does not take it for delivered: a re-run sends them
    again, got = send(tmp_path)
    assert again.exit_code == 0 and [r["outcome"] for r in got] == ["sent"] * 3
    assert server.survey_count() == 3


@pytest.mark.parametrize("server", [{"per_email_failures": True,
                                     "refused_emails": ["user1@example.com"]}],
                         indirect=True)  # fmt: skip
def test_a_per_email_failed_entry_fails_that_email_with_retentlys_reason(server, tmp_path):
    result, got = send(tmp_path)
    assert result.exit_code == 1
    assert [(r["email"], r["outcome"]) for r in got] == [
        ("user0@example.com", "sent"),
        ("user1@example.com", "failed"),
        ("user2@example.com", "sent"),
    ]
    assert got[1]["reason"] == "rejected"
    assert got[1]["detail"] == "user1@example.com has unsubscribed"
    assert got[0]["result"] == "created"
    assert len(server.requests) == 1 and server.survey_count() == 2


@pytest.mark.parametrize("shape", ["empty_body", "no_results"])
def test_any_other_2xx_is_sent(server, tmp_path, shape):
    server.inject(shape)
    result, got = send(tmp_path)
    assert result.exit_code == 0, result.output
    assert [r["outcome"] for r in got] == ["sent"] * 3
    assert {r["status"] for r in got} == {200}
    assert server.survey_count() == 3


def test_check_online_does_not_take_a_2xx_that_says_it_failed_for_a_working_key(server, tmp_path):
    server.inject("envelope_error", path="/api/v2/ping")
    result = run("check", "--online", "-c", str(EXAMPLE_CONFIG))
    assert result.exit_code == 1, result.output
    assert "cannot reach Retently: HTTP 200 with code 422: The given data was invalid." in (
        result.stderr
    )
    assert "key accepted" not in result.output


def test_a_2xx_whose_envelope_says_401_stops_the_run_like_a_refused_key(server, tmp_path):
    server.inject("envelope_401")
    many = ndjson(*(track(message_id=f"k{i}", email=f"u{i}@example.com") for i in range(300)))
    result = run("send", "-c", str(EXAMPLE_CONFIG), "--no-ledger", "-o", "ndjson", "-", input=many)
    assert result.exit_code == 3, result.output
    assert server.survey_count() == 0 and len(server.requests) <= 4
    assert "Retently refused the API key" in result.stderr
    assert TEST_KEY not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("answer", "full", "brief"),
    [
        (Answer(503, {"message": "down"}), "HTTP 503: down", "HTTP 503"),
        (Answer(422, {"message": ""}), "HTTP 422", "HTTP 422"),
        (Answer(500, ["not", "a", "dict"]), "HTTP 500", "HTTP 500"),
        (Answer(None, error="ReadTimeout", problem="x did not answer"), "x did not answer", None),
        (Answer(None, error="ReadError"), "ReadError", None),
    ],
)
def test_an_answer_is_described_in_the_same_words_everywhere(answer, full, brief):
    assert answer.describe() == full
    assert answer.describe(message=False) == (brief or full)
