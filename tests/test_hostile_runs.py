"""Issue 8: what adversarial runs found in `send` itself: crashes that stopped a backfill for
good, outputs that destroyed their own inputs, the tool reading its own records back."""

import pytest
from click.testing import CliRunner
from conftest import CSAT, EXAMPLE_CONFIG, NPS, ndjson, records, track

from retently_cli.cli import cli
from retently_cli.ledger import Ledger
from retently_cli.matching import content_key


def send(*args, input=None):
    return CliRunner().invoke(cli, ["send", "-c", str(EXAMPLE_CONFIG), *args], input=input)


# 1. Out-of-range timestamps -------------------------------------------------------------------


def out_of_range_events():
    return ndjson(
        {**track(message_id="late", email="late@example.com"),
         "timestamp": "9999-12-31T23:00:00-05:00"},
        {**track(message_id="early", email="early@example.com"),
         "timestamp": "0001-01-01T00:00:00+01:00"},
        track(message_id="fine", email="fine@example.com"),
    )  # fmt: skip


def test_an_out_of_range_timestamp_does_not_crash_a_live_send_or_its_rerun(fake_env):
    first = send("-o", "ndjson", "-", input=out_of_range_events())
    assert first.exception is None or isinstance(first.exception, SystemExit), first.exception
    assert first.exit_code == 0, first.stderr
    got = records(first.stdout)
    assert sorted(r["message_id"] for r in got if r["outcome"] == "sent") == sorted(
        ["late", "late", "early", "early", "fine", "fine"]
    )
    again = send("-o", "ndjson", "-", input=out_of_range_events())
    assert again.exit_code == 0, again.stderr
    assert {r["reason"] for r in records(again.stdout)} == {"already_sent"}
    assert fake_env.survey_count() == 6


def test_an_out_of_range_timestamp_is_filtered_by_a_window_not_a_crash(fake_env):
    result = send("-n", "-o", "ndjson", "--since", "2020-01-01", "-", input=out_of_range_events())
    assert result.exit_code == 0, result.stderr
    by_id = {r["message_id"]: r for r in records(result.stdout)}
    assert by_id["late"]["reason"] == "filtered"
    assert "timestamp" in by_id["late"]["detail"]
    assert by_id["early"]["reason"] == "filtered"


def test_an_out_of_range_since_is_a_usage_error():
    result = send("-n", "--since", "9999-12-31T23:00-05:00", "-", input=b"")
    assert result.exit_code == 2
    assert "--since" in result.stderr and "9999-12-31T23:00-05:00" in result.stderr
    assert "Traceback" not in result.stderr and "OverflowError" not in result.stderr


# 8. One identity rule everywhere ---------------------------------------------------------------


def redelivered(message_id, received_at):
    return {**track(message_id=None, email="ann@example.com"), "messageId": message_id,
            "receivedAt": received_at}  # fmt: skip


@pytest.mark.parametrize("message_id", [1.5, 12.0, True, ["a", 1], {"id": "x"}])
def test_a_redelivered_copy_with_an_odd_message_id_is_not_surveyed_again(fake_env, message_id):
    first = send("-o", "ndjson", "-", input=ndjson(redelivered(message_id, "2024-01-01T00:00Z")))
    assert first.exit_code == 0, first.stderr
    assert fake_env.survey_count() == 2  # NPS and CSAT
    copy = ndjson(redelivered(message_id, "2024-01-02T05:00Z"))
    again = send("-o", "ndjson", "-", input=copy)
    assert again.exit_code == 0, again.stderr
    assert {r["reason"] for r in records(again.stdout)} == {"already_sent"}
    assert fake_env.survey_count() == 2


def test_in_a_run_and_across_runs_the_identity_is_the_same(fake_env):
    both = ndjson(redelivered(1.5, "2024-01-01T00:00Z"), redelivered(1.5, "2024-01-02T00:00Z"))
    first = records(send("-o", "ndjson", "-", input=both).stdout)
    assert [r["reason"] for r in first if r["line"] == 2] == ["duplicate", "duplicate"]
    assert fake_env.survey_count() == 2


def test_what_an_older_version_recorded_under_the_content_hash_still_counts(fake_env, tmp_path):
    message = redelivered(1.5, "2024-01-01T00:00Z")
    path = tmp_path / "ledger.sqlite3"
    ledger = Ledger(path)
    old_key = content_key(message)  # how 0.1 keyed an event whose messageId was a float
    ledger.begin([(old_key, c, "ann@example.com", None) for c in (NPS, CSAT)])
    ledger.settle([(old_key, c, 200) for c in (NPS, CSAT)], [], [])
    ledger.close()
    result = send("--ledger", str(path), "-o", "ndjson", "-", input=ndjson(message))
    assert {r["reason"] for r in records(result.stdout)} == {"already_sent"}
    assert fake_env.survey_count() == 0
