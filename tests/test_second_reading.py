"""What a second reading of issues 10, 11 and 12 found: each defect reproduced by its test."""

import os

import orjson
import pytest
from helpers import delivery_config, ndjson, numbered_events, records, run, track


def _config(tmp_path, **delivery):
    return delivery_config(tmp_path, **{"rate_limit": 60000, **delivery})


def send(config, *args, input=None):
    return run("send", "-c", str(config), *args, input=input)


@pytest.mark.slow
def test_the_breaker_accounts_for_every_line_read_and_says_the_rest_was_not(fake_env, tmp_path):
    fake_env.inject(503, times=100_000)
    summary = tmp_path / "summary.json"
    result = send(
        _config(tmp_path),
        "-o",
        "ndjson",
        "--summary-json",
        str(summary),
        str(numbered_events(tmp_path, 3000)),
    )
    assert result.exit_code == 4, result.stderr
    ended = orjson.loads(summary.read_bytes())
    assert not ended["read_complete"]
    # Each line read is one event here: each has its record, none is dropped at the stop.
    assert len(records(result.stdout)) == ended["records"] == ended["lines"]
    assert "the rest of the input not yet read" in result.stderr


@pytest.mark.slow
def test_without_a_ledger_the_words_never_say_a_rerun_resumes(fake_env, tmp_path):
    """--no-ledger: re-running the same command would survey again whom this run surveyed."""
    fake_env.inject("no_results", times=3)  # three answered, then the API is gone
    fake_env.inject(503, times=100_000)
    result = send(_config(tmp_path), "--no-ledger", str(numbered_events(tmp_path, 40)))
    assert result.exit_code == 4, result.stderr
    assert fake_env.survey_count() == 3
    words = " ".join(result.stderr.split()).lower()
    assert "re-run the same command" not in words
    assert "no ledger" in words and "survey again the 3" in words


def test_summary_json_never_overwrites_an_input_or_the_ledger(fake_env, tmp_path):
    events = numbered_events(tmp_path, 3)
    before = events.read_bytes()
    result = send(_config(tmp_path), "-n", "--summary-json", str(events), str(events))
    assert result.exit_code == 2, result.stderr
    assert "--summary-json" in result.stderr and "also an input" in result.stderr
    assert events.read_bytes() == before
    # The ledger: a summary written over it would make the next run survey everyone again.
    ledger = tmp_path / "ledger.sqlite3"
    first = send(_config(tmp_path), "--ledger", str(ledger), str(events))
    assert first.exit_code == 0, first.stderr
    held = ledger.read_bytes()
    again = send(
        _config(tmp_path), "--ledger", str(ledger), "--summary-json", str(ledger), str(events)
    )
    assert again.exit_code == 2, again.stderr
    assert ledger.read_bytes() == held
    assert fake_env.survey_count() == 3


def test_summary_json_on_stdout_is_refused_when_stdout_carries_dead_letters(tmp_path):
    result = send(
        _config(tmp_path),
        "-n",
        "--failed",
        "-",
        "--summary-json",
        "-",
        str(numbered_events(tmp_path, 2)),
    )
    assert result.exit_code == 2, result.stderr
    assert "--summary-json -" in result.stderr


def test_a_pipe_named_as_a_path_is_sent_not_planned_away(fake_env, tmp_path):
    """`send <(zcat export.gz)`: the plan read the pipe to its end, and the send then found it
    empty: the plan promised five surveys, none was sent, and the run exited 0."""
    read, write = os.pipe()
    os.write(write, ndjson(*(track(message_id=str(i), email=f"u{i}@x.example") for i in range(5))))
    os.close(write)
    try:
        result = send(_config(tmp_path), f"/dev/fd/{read}")
    finally:
        os.close(read)
    assert result.exit_code == 0, result.stderr
    assert fake_env.survey_count() == 5
    assert "cannot be planned" in result.stderr
    assert "ledger: " in result.stderr  # named, as a plan would have named it
