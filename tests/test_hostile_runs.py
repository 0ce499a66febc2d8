"""Issue 8: what adversarial runs found in `send` itself: crashes that stopped a backfill for
good, outputs that destroyed their own inputs, the tool reading its own records back."""

import helpers
import orjson
import pytest
from helpers import CSAT, NPS, ndjson, records, send, track

from retently_cli.ledger import Ledger
from retently_cli.matching import content_key

# 1. Out-of-range timestamps -------------------------------------------------------------------


def out_of_range_events():
    return ndjson(
        {**track(message_id="late", email="late@example.com"),
         "timestamp": "9999-12-31T23:00:00-05:00"},
        {**track(message_id="early", email="early@example.com"),
         "timestamp": "0001-01-01T00:00:00+01:00"},
        track(message_id="fine", email="fine@example.com"),
    )  # fmt: skip


@pytest.mark.slow
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


# 3. An output that is also an input --------------------------------------------------------


def ticket(i):
    return track("Support Ticket Closed", message_id=f"t{i}", email=f"u{i}@example.com")


@pytest.mark.slow
def test_dead_letters_fed_back_under_the_same_name_are_read_whole(fake_env, tmp_path):
    fake_env.refused_emails = {"u1@example.com", "u2@example.com", "u3@example.com"}
    dead = tmp_path / "failed.ndjson"
    first = send("--failed", str(dead), "-", input=ndjson(*(ticket(i) for i in range(5))))
    assert first.exit_code == 1
    assert len(dead.read_bytes().splitlines()) == 3
    fake_env.refused_emails = {"u3@example.com"}  # two of three fixed
    retry = send("--failed", str(dead), "-o", "ndjson", str(dead))
    got = records(retry.stdout)
    assert sorted((r["message_id"], r["outcome"]) for r in got) == [
        ("t1", "sent"), ("t2", "sent"), ("t3", "failed")
    ]  # fmt: skip
    left = [orjson.loads(line) for line in dead.read_bytes().splitlines()]
    assert [m["messageId"] for m in left] == ["t3"]
    assert not list(tmp_path.glob(".failed.ndjson.*"))  # no temporary file left behind
    assert fake_env.survey_count() == 4


def test_a_report_over_an_input_is_refused_before_anything_is_written(fake_env, tmp_path):
    events = tmp_path / "events.ndjson"
    events.write_bytes(ndjson(ticket(1)))
    alias = tmp_path / "alias.ndjson"
    alias.symlink_to(events)
    for args in (["--report", str(events)], ["--report", str(alias)], ["-n", "--failed",
                 str(tmp_path / "x"), "--report", str(tmp_path / "x")]):  # fmt: skip
        result = send(*args, str(events))
        assert result.exit_code == 2, (args, result.stderr)
        assert events.read_bytes() == ndjson(ticket(1))
    assert "also an input" in send("--report", str(alias), str(events)).stderr
    assert fake_env.survey_count() == 0


def test_an_output_over_the_ledger_is_refused(fake_env, tmp_path):
    ledger = tmp_path / "ledger.sqlite3"
    send("--ledger", str(ledger), "-", input=ndjson(ticket(1)))
    before = ledger.read_bytes()
    for option in ("--report", "--failed"):
        result = send("--ledger", str(ledger), option, str(ledger), "-", input=ndjson(ticket(2)))
        assert result.exit_code == 2 and "ledger" in result.stderr
    assert ledger.read_bytes() == before and fake_env.survey_count() == 1


# 4. The tool's own records are not events ----------------------------------------------------


def test_a_report_read_back_as_input_surveys_nobody(fake_env, tmp_path):
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "events.ndjson").write_bytes(ndjson(*(ticket(i) for i in range(3))))
    config = tmp_path / "wide.yaml"  # an email path that a report record also has
    config.write_text(
        'campaigns:\n  "61ab2c9d8e7f6a0011bc45de": "Support Ticket Closed"\n'
        "email_paths: [properties.email, email]\n"
    )

    def run(*args):
        return send(*args, config=config)

    first = run("--report", str(folder / "report.ndjson"), str(folder))
    assert "inside the input folder" in first.stderr
    dry = run("-n", "-o", "ndjson", "--report", str(tmp_path / "dry.ndjson"), str(folder))
    (folder / "dry.ndjson").write_bytes((tmp_path / "dry.ndjson").read_bytes())
    again = run("--no-ledger", "-o", "ndjson", str(folder))
    got = records(again.stdout)
    own = [r for r in got if r["source"].endswith(("report.ndjson", "dry.ndjson"))]
    assert own and {(r["outcome"], r["reason"]) for r in own} == {("skipped", "retently_record")}
    # one record per line read back, none surveyed: the report's 3, and the dry-run's 6 (it read
    # the report too, and gave its 3 lines a record each)
    assert len(own) == 3 + 6
    assert "report.ndjson" in again.stderr and "written by retently" in again.stderr
    assert again.stderr.count("written by retently") == 2  # once per file
    assert fake_env.survey_count() == 3 + 3  # the first run, then the events again (no ledger)
    assert dry.exit_code == 0


def test_init_never_overwrites_the_log_it_reads(tmp_path):
    log = tmp_path / "export.ndjson"
    log.write_bytes(ndjson(ticket(1)))
    result = helpers.run("init", str(log), "--from-log", str(tmp_path), "--force")
    assert result.exit_code == 2 and "also a --from-log input" in result.stderr
    assert log.read_bytes() == ndjson(ticket(1))
