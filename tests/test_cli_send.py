"""retently send --dry-run through click's CliRunner: stdout and stderr asserted apart."""

import orjson
import pytest
from helpers import (
    CES,
    CSAT,
    EXAMPLE_CONFIG,
    NPS,
    ndjson,
    records,
    run,
    stderr_lines,
    track,
    write_gz,
)


def send(*args, input=None, config=EXAMPLE_CONFIG):
    return run("send", "-n", "-c", str(config), *args, input=input)


MIXED = (
    ndjson(
        track(message_id="a", firstName="Ann"),  # NPS and CSAT
        {"type": "identify", "messageId": "i", "traits": {"email": "x@example.com"}},
        {
            **track(event="Onboarding Finished", message_id="b", email=None),
            "context": {"traits": {"email": "bob@example.com"}},
        },
        track(event="order completed", message_id="c"),
        track(message_id="a"),  # a repeated delivery
        track(event="Support Ticket Closed", message_id="d", email="nope"),
    )
    + b"{broken\n"
)


def test_ndjson_gives_one_record_per_decision_and_the_exact_request():
    result = send("-o", "ndjson", "-", input=MIXED)
    assert result.exit_code == 1  # a malformed line
    got = records(result.stdout)
    assert [(r["line"], r["campaign"], r["outcome"], r["reason"]) for r in got] == [
        (1, NPS, "dry_run", None),
        (1, CSAT, "dry_run", None),
        (2, None, "skipped", "not_track"),
        (3, CES, "skipped", "missing_email"),
        (4, None, "skipped", "no_campaign"),
        (5, NPS, "skipped", "duplicate"),
        (5, CSAT, "skipped", "duplicate"),
        (6, CSAT, "skipped", "invalid_email"),
        (7, None, "failed", "invalid_json"),
    ]
    first, second = got[0], got[1]
    assert first["source"] == "-" and first["message_id"] == "a"
    assert first["email"] == "ann@example.com" and first["event"] == "Order Completed"
    assert first["request"] == {
        "method": "POST",
        "path": "/api/v2/survey",
        "batch": 1,
        "body": {
            "campaign": NPS,
            "subscribers": [{"email": "ann@example.com", "first_name": "Ann"}],
        },
    }
    assert second["request"]["body"]["delay"] == 3  # CSAT has delay: 3 in the example
    assert second["request"]["batch"] == 2  # another campaign, another request
    assert got[3]["detail"] == "email is at context.traits.email, which email_paths does not list"
    assert got[4]["detail"] == "did you mean 'Order Completed'?"
    assert "request" not in got[2]


def test_ndjson_keeps_stderr_for_the_summary():
    result = send("-o", "ndjson", "-", input=MIXED)
    assert "Summary: 7 lines read from 1 source, 9 records" in result.stderr
    assert "{" not in stderr_lines(result)[0]
    quiet = send("-o", "ndjson", "-q", "-", input=MIXED)
    assert quiet.stderr == "" and quiet.stdout == result.stdout


def test_summary_counts_add_up_to_what_was_read():
    result = send("-", input=MIXED)
    err = result.stderr
    assert result.stdout == ""
    assert "dry_run" in err and "not_track" in err
    assert "'order completed' ×1: did you mean 'Order Completed'?" in err
    for campaign, surveys, skipped in ((NPS, 1, 1), (CSAT, 1, 2), (CES, 0, 1)):
        assert any(
            line.split() == [campaign, str(surveys), "0", str(skipped)]  # none sent earlier
            for line in err.splitlines()
        ), campaign


def test_table_shows_matched_and_failed_rows_and_counts_the_rest():
    result = send("-", input=MIXED)
    rows = [line for line in stderr_lines(result) if line.startswith("-:")]
    assert [row.split()[0] for row in rows] == ["-:1", "-:1", "-:3", "-:5", "-:5", "-:6", "-:7"]
    assert "2 rows for events not surveyed (unmatched, already sent, filtered) not shown" in (
        result.stderr
    )
    everything = send("--all-rows", "-", input=MIXED)
    rows = [line for line in stderr_lines(everything) if line.startswith("-:")]
    assert len(rows) == 9 and "not shown" not in everything.stderr


def test_no_colour_or_cursor_codes_when_not_a_terminal():
    result = send("-", input=MIXED)
    assert "\x1b" not in result.stderr


def test_exit_0_when_everything_is_fine_and_1_on_malformed_input():
    assert send("-", input=ndjson(track())).exit_code == 0
    assert send("-", input=ndjson(track()) + b"nope\n").exit_code == 1


def test_files_folders_and_stdin_together(tmp_path):
    write_gz(tmp_path / "logs" / "1" / "a.gz", ndjson(track(message_id="g")))
    (tmp_path / "one.json").write_bytes(
        orjson.dumps(track(message_id="j"), option=orjson.OPT_INDENT_2)
    )
    result = send(
        "-o",
        "ndjson",
        str(tmp_path / "logs"),
        str(tmp_path / "one.json"),
        "-",
        input=ndjson(track(message_id="s")),
    )
    got = [(r["source"], r["line"], r["message_id"]) for r in records(result.stdout)]
    assert got == [
        (str(tmp_path / "logs" / "1" / "a.gz"), 1, "g"),
        (str(tmp_path / "logs" / "1" / "a.gz"), 1, "g"),
        (str(tmp_path / "one.json"), 1, "j"),
        (str(tmp_path / "one.json"), 1, "j"),
        ("-", 1, "s"),
        ("-", 1, "s"),
    ]


def test_a_missing_path_is_a_usage_error_before_anything_is_read(tmp_path):
    result = send("-o", "ndjson", str(tmp_path / "nope.gz"))
    assert result.exit_code == 2 and result.stdout == ""
    assert "does not exist" in result.stderr


def test_event_names_are_shown_exactly(tmp_path):
    result = send("--all-rows", "-", input=ndjson(track(event="Order Completed ", message_id="t")))
    row = next(line for line in stderr_lines(result) if line.startswith("-:1"))
    assert "'Order Completed '" in row  # the trailing space is made visible


def test_rich_markup_in_event_data_is_printed_literally():
    result = send("--all-rows", "-", input=ndjson(track(event="[bold]Hi[/bold]", message_id="t")))
    assert "[bold]Hi[/bold]" in result.stderr


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_lists_examples_and_exit_codes(flag):
    result = run("send", flag)
    assert result.exit_code == 0
    assert "retently send --dry-run -c config.example.yaml examples/" in result.stdout
    assert "130  interrupted" in result.stdout
    top = run(flag)
    assert "Exit codes" in top.stdout and "send" in top.stdout and "check" in top.stdout


def test_the_table_stops_at_max_rows_and_says_so_while_every_record_is_still_counted():
    many = ndjson(*(track(event="Onboarding Finished", message_id=str(i)) for i in range(30)))
    result = send("--max-rows", "10", "-", input=many)
    rows = [line for line in stderr_lines(result) if line.startswith("-:")]
    assert len(rows) == 10
    assert "20 more rows not shown after the first 10" in result.stderr
    assert any(line.split() == ["dry_run", "30"] for line in stderr_lines(result))
    everything = send("--max-rows", "10", "--all-rows", "-", input=many)
    assert len([ln for ln in stderr_lines(everything) if ln.startswith("-:")]) == 30


def test_a_matched_event_nested_absurdly_deep_is_reported_and_the_run_goes_on():
    deep_properties = '{"email":"ann@example.com","x":' + '{"a":' * 1000 + "1" + "}" * 1000 + "}"
    deep = (
        '{"type":"track","event":"Onboarding Finished","messageId":"deep","properties":'
        + deep_properties + "}\n"
    ).encode()  # fmt: skip
    result = send("-o", "ndjson", "-", input=deep + ndjson(track(event="Onboarding Finished")))
    got = [(r["line"], r["outcome"], r["reason"]) for r in records(result.stdout)]
    assert got == [(1, "skipped", "too_deeply_nested"), (2, "dry_run", None)]
    assert "Traceback" not in result.stderr
