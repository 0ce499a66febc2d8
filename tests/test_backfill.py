"""Safe backfills end to end: re-runs, crashes, interrupts, dead letters, filters."""

import os
import random
import signal
import subprocess
import time
from collections import Counter

import orjson
import pytest
from helpers import (
    CES,
    CSAT,
    NPS,
    RETENTLY,
    ROOT,
    TEST_KEY,
    ended_within,
    ndjson,
    records,
    run,
    track,
)

from retently_cli.fake_server import FakeRetently

CONFIG = f"""\
campaigns:
  "{NPS}": "Order Completed"
  "{CSAT}": "Order Completed, Ticket Closed"
  "{CES}": {{events: "Signed Up", once_per_email: 30}}
batch_size: 4
"""


@pytest.fixture
def setup(tmp_path, fake, monkeypatch):
    monkeypatch.setenv("RETENTLY_BASE_URL", fake.url)
    monkeypatch.setenv("RETENTLY_API_KEY", TEST_KEY)
    (tmp_path / "c.yaml").write_text(CONFIG)
    return tmp_path


def event(i, name="Order Completed", **extra):
    # 'ref' carries the messageId into the subscriber, so the server's records can be matched
    message = track(event=name, message_id=f"m{i}", email=f"u{i}@example.com", ref=f"m{i}")
    message["timestamp"] = f"2024-05-{1 + i % 28:02d}T12:00:00Z"
    return {**message, **extra}


def send(tmp_path, *args, input=None):
    return run("send", "-c", str(tmp_path / "c.yaml"), "-o", "ndjson", *args, input=input)


def delivered(server) -> Counter:
    return Counter((s["campaign"], _ref(s["subscriber"])) for s in server.surveys)


def _ref(subscriber):
    return next(p["value"] for p in subscriber.get("properties", []) if p["label"] == "ref")


@pytest.mark.slow
def test_a_rerun_sends_nothing_already_delivered(setup, fake):
    data = ndjson(*(event(i) for i in range(10)))
    first = send(setup, "-", input=data)
    assert first.exit_code == 0 and fake.survey_count() == 20
    again = send(setup, "-", input=data + ndjson(event(10)))
    got = Counter((r["outcome"], r["reason"]) for r in records(again.stdout))
    assert got == {("skipped", "already_sent"): 20, ("sent", None): 2}
    assert fake.survey_count() == 22 and max(delivered(fake).values()) == 1
    unprotected = send(setup, "--no-ledger", "-", input=ndjson(event(0)))
    assert unprotected.exit_code == 0 and fake.survey_count() == 24


def test_events_without_a_message_id_are_known_by_their_content(setup, fake):
    bare = {k: v for k, v in event(1).items() if k != "messageId"}
    send(setup, "-", input=ndjson(bare))
    again = records(send(setup, "-", input=ndjson(bare)).stdout)
    assert {r["reason"] for r in again} == {"already_sent"} and fake.survey_count() == 2


def test_a_dry_run_sees_the_ledger_without_writing_it(setup, fake):
    ledger = setup / "l.sqlite3"
    dry = send(setup, "-n", "--ledger", str(ledger), "-v", "-", input=ndjson(event(1)))
    assert f"ledger: {ledger} (none yet" in dry.stderr and not ledger.exists()
    send(setup, "--ledger", str(ledger), "-", input=ndjson(event(1)))
    dry = records(
        send(setup, "-n", "--ledger", str(ledger), "-", input=ndjson(event(1), event(2))).stdout
    )
    assert [(r["message_id"], r["reason"]) for r in dry if r["campaign"] == NPS] == [
        ("m1", "already_sent"), ("m2", None)
    ]  # fmt: skip


def test_a_lost_connection_is_uncertain_then_listed_not_resent(setup, fake):
    fake.inject("drop_after", times=1)
    first = records(send(setup, "-", input=ndjson(event(1, name="Ticket Closed"))).stdout)
    assert [(r["outcome"], r["reason"]) for r in first] == [("uncertain", "connection_lost")]
    assert fake.survey_count() == 1  # it did arrive; the tool cannot know
    second = send(setup, "-", input=ndjson(event(1, name="Ticket Closed")))
    assert second.exit_code == 1
    assert [(r["outcome"], r["reason"]) for r in records(second.stdout)] == [
        ("uncertain", "earlier_run")
    ]
    assert fake.survey_count() == 1
    forced = send(setup, "--retry-uncertain", "-", input=ndjson(event(1, name="Ticket Closed")))
    assert forced.exit_code == 0 and fake.survey_count() == 2  # asked for, so sent again


@pytest.mark.slow
def test_dead_letters_round_trip_after_a_fix(setup, fake):
    fake.refused_emails = {"u2@example.com"}
    dead = setup / "failed.ndjson"
    data = ndjson(*(event(i, name="Ticket Closed") for i in range(4)))
    first = send(setup, "--failed", str(dead), "-", input=data)
    assert first.exit_code == 1
    lines = [orjson.loads(line) for line in dead.read_bytes().splitlines()]
    assert len(lines) == 1
    original = event(2, name="Ticket Closed")
    assert {k: v for k, v in lines[0].items() if k != "_retently"} == original
    assert lines[0]["_retently"] == {"reason": "rejected", "status": 400, "attempts": 1,
                                     "campaign": CSAT}  # fmt: skip
    fake.refused_emails = set()  # the fix
    retry = send(setup, str(dead))
    assert retry.exit_code == 0
    assert [(r["message_id"], r["outcome"]) for r in records(retry.stdout)] == [("m2", "sent")]
    assert fake.survey_count() == 4 and max(delivered(fake).values()) == 1


def test_filters_are_reported_never_dropped(setup, fake):
    data = ndjson(*(event(i) for i in range(6)), event(6, name="Ticket Closed"))
    result = send(setup, "--since", "2024-05-03", "--until", "2024-05-06T00:00:00Z",
                  "--campaign", CSAT, "--limit", "2", "-", input=data)  # fmt: skip
    got = records(result.stdout)
    assert len(got) == 13  # 6 events x 2 campaigns + 1
    sent = [(r["message_id"], r["campaign"]) for r in got if r["outcome"] == "sent"]
    assert sent == [("m2", CSAT), ("m3", CSAT)]
    reasons = Counter(r["reason"] for r in got if r["outcome"] == "skipped")
    assert reasons == {"filtered": 10, "limit": 1}
    assert "filtered" in result.stderr and "limit" in result.stderr
    by_name = records(send(setup, "-n", "--event", "Ticket Closed", "-", input=data).stdout)
    assert [r["message_id"] for r in by_name if r["outcome"] == "dry_run"] == ["m6"]


def test_bad_filter_values_are_usage_errors(setup):
    assert send(setup, "--since", "yesterday", "-", input=b"").exit_code == 2
    result = send(setup, "--campaign", "nope", "-", input=b"")
    assert (
        result.exit_code == 2
        and "--campaign nope: the config maps no such campaign" in result.stderr
    )


def test_once_per_email_holds_across_runs(setup, fake):
    first = {**event(1, name="Signed Up"), "timestamp": "2024-05-01T00:00:00Z"}
    soon = {
        **event(2, name="Signed Up", email="u1@example.com"),
        "timestamp": "2024-05-20T00:00:00Z",
    }
    soon["properties"]["email"] = "U1@example.com"
    send(setup, "-", input=ndjson(first))
    result = records(send(setup, "-", input=ndjson(soon)).stdout)
    assert [(r["outcome"], r["reason"]) for r in result] == [("skipped", "once_per_email")]
    assert fake.survey_count(campaign=CES) == 1


def test_report_file_has_every_record_while_the_table_shows(setup, fake):
    report = setup / "report.ndjson"
    result = run(
        "send", "-c", str(setup / "c.yaml"), "--report", str(report), "-",
        input=ndjson(event(1), {"type": "page"}),
    )  # fmt: skip
    assert result.exit_code == 0 and result.stdout == ""
    assert "Summary" in result.stderr and "sent" in result.stderr
    got = sorted(r["outcome"] for r in records(report.read_bytes()))
    assert got == ["sent", "sent", "skipped"]


# -- crashes and interrupts, in real processes ----------------------------------------------------


def _run_cli(tmp_path, fake_url, args, **popen):
    env = {**os.environ, "NO_COLOR": "1", "RETENTLY_BASE_URL": fake_url,
           "RETENTLY_API_KEY": TEST_KEY}  # fmt: skip
    command = [*RETENTLY, "send", "-c", str(tmp_path / "c.yaml"),
               "-o", "ndjson", "--ledger", str(tmp_path / "ledger.sqlite3"), *args]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            cwd=ROOT, **popen)  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGKILL", "SIGINT"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_killed_at_a_random_moment_then_rerun_delivers_everything_once(tmp_path, how, seed):
    rng = random.Random(seed)
    (tmp_path / "c.yaml").write_text(
        CONFIG.replace("batch_size: 4", "batch_size: 3\nrate_limit: 3000")
    )
    events = tmp_path / "events.ndjson"
    events.write_bytes(ndjson(*(event(i) for i in range(90))))  # 180 surveys, 60 requests
    expected = {(c, f"m{i}") for i in range(90) for c in (NPS, CSAT)}
    with FakeRetently(api_key=TEST_KEY, fault_rate=0.1, fault_choices=["503", "drop_after"],
                      fault_retry_after=0, seed=seed) as fake:  # fmt: skip
        first = _run_cli(tmp_path, fake.url, [str(events)])
        deadline = time.monotonic() + 20
        target = rng.randint(5, 150)
        while fake.survey_count() < target and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        first.send_signal(getattr(signal, how))
        ended_within(first, 30)
        killed = {"SIGKILL": -9, "SIGINT": 130}[how]
        assert first.returncode == killed, "it finished before the signal"
        fake.fault_rate = 0.0
        second = _run_cli(tmp_path, fake.url, [str(events)])
        out, err = second.communicate(timeout=60)
        counts = delivered(fake)
    assert all(n == 1 for n in counts.values()), [k for k, n in counts.items() if n > 1]
    rerun = records(out)
    uncertain = {(r["campaign"], r["message_id"]) for r in rerun if r["outcome"] == "uncertain"}
    assert all(r["reason"] == "earlier_run" for r in rerun if r["outcome"] == "uncertain")
    assert expected - uncertain <= set(counts), "something certain was never delivered"
    assert not any(r["outcome"] == "failed" for r in rerun), err
    assert second.returncode == (1 if uncertain else 0)


@pytest.mark.slow
def test_a_second_ctrl_c_quits_at_once_and_the_ledger_stays_consistent(tmp_path):
    (tmp_path / "c.yaml").write_text(CONFIG.replace("batch_size: 4", "batch_size: 1"))
    events = tmp_path / "events.ndjson"
    events.write_bytes(ndjson(*(event(i, name="Ticket Closed") for i in range(5))))
    with FakeRetently(api_key=TEST_KEY, slow_seconds=4.0) as fake:
        fake.inject("slow", times=10)
        first = _run_cli(tmp_path, fake.url, ["--grace", "30", str(events)])
        deadline = time.monotonic() + 10
        while not fake.requests and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)  # the requests are now in flight, each answered only after 4 s
        first.send_signal(signal.SIGINT)
        time.sleep(0.5)
        started = time.monotonic()
        first.send_signal(signal.SIGINT)
        _, err = ended_within(first, 10)
        assert first.returncode == 130 and time.monotonic() - started < 2.0
        assert b"interrupted again: quitting now" in err and b"Traceback" not in err
        time.sleep(4.5)  # let the server finish what it was doing
        second = _run_cli(tmp_path, fake.url, [str(events)])
        out, _ = second.communicate(timeout=60)
        counts = delivered(fake)
    rerun = records(out)
    uncertain = {r["message_id"] for r in rerun if r["outcome"] == "uncertain"}
    assert uncertain, "the requests in flight at the second Ctrl-C are remembered as unknown"
    assert all(n == 1 for n in counts.values())
    assert {f"m{i}" for i in range(5)} - uncertain <= {ref for _, ref in counts}


# -- found in review: each of these once surveyed someone twice or lost an event ----------------


def test_two_runs_cannot_share_a_ledger_at_once(setup):
    from retently_cli.ledger import Ledger

    path = setup / "shared.sqlite3"
    holder = Ledger(path)  # another run, still going
    try:
        second = send(setup, "--ledger", str(path), "-", input=ndjson(event(1)))
        assert second.exit_code == 2 and second.stdout == ""
        assert "another run is using this ledger (pid " in second.stderr
        dry = send(setup, "-n", "--ledger", str(path), "-", input=ndjson(event(1)))
        assert dry.exit_code == 0  # a dry-run only reads
    finally:
        holder.close()
    assert send(setup, "--ledger", str(path), "-", input=ndjson(event(1))).exit_code == 0


def test_a_dead_letter_file_of_events_without_message_ids_sends_each_once(setup, fake):
    (setup / "c.yaml").write_text(CONFIG + "max_attempts: 1\n")
    bare = {k: v for k, v in event(1).items() if k != "messageId"}  # NPS and CSAT
    fake.inject("503", times=2)
    dead = setup / "failed.ndjson"
    assert send(setup, "--failed", str(dead), "-", input=ndjson(bare)).exit_code == 1
    assert len(dead.read_bytes().splitlines()) == 2  # one line per failed campaign
    retry = records(send(setup, str(dead)).stdout)
    assert Counter((r["outcome"], r["reason"]) for r in retry) == {
        ("sent", None): 2,
        ("skipped", "duplicate"): 2,
    }
    assert fake.survey_count() == 2


def test_a_retry_of_an_uncertain_survey_that_surely_failed_keeps_it_uncertain(
    setup, fake, monkeypatch
):
    ticket = ndjson(event(1, name="Ticket Closed"))
    fake.inject("drop_after", times=1)
    send(setup, "-", input=ticket)  # uncertain: it did arrive
    monkeypatch.setenv("RETENTLY_API_KEY", "a-wrong-key")
    refused = send(setup, "--retry-uncertain", "-", input=ticket)
    assert refused.exit_code == 3
    monkeypatch.setenv("RETENTLY_API_KEY", TEST_KEY)
    later = records(send(setup, "-", input=ticket).stdout)
    assert [(r["outcome"], r["reason"]) for r in later] == [("uncertain", "earlier_run")]
    assert fake.survey_count() == 1


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["TERM", "HUP"])
def test_a_sigterm_while_batches_are_handed_over_loses_none(tmp_path, fake, signum):
    """SIGTERM (a kill, a container stopping) and SIGHUP (the terminal or ssh session gone)
    end a send as Ctrl-C does: what is in flight is accounted for, the rest not sent."""
    six = "\n".join(f'  "c{i}": "Order Completed"' for i in range(6))
    (tmp_path / "c.yaml").write_text(f"campaigns:\n{six}\nrate_limit: 1\nconcurrency: 1\n")
    fake.campaigns = [
        {"id": f"c{i}", "name": f"c{i}", "type": "transactional", "channel": "email"}
        for i in range(6)
    ]
    events = tmp_path / "e.ndjson"
    events.write_bytes(ndjson(event(1)))
    proc = _run_cli(tmp_path, fake.url, ["--failed", str(tmp_path / "dead"), str(events)])
    deadline = time.monotonic() + 10
    while fake.survey_count() < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.5)
    proc.send_signal(signum)
    out, err = ended_within(proc, 30)
    assert proc.returncode == 130, err
    got = records(out)
    assert sorted(r["campaign"] for r in got) == [f"c{i}" for i in range(6)]
    assert sum(r["outcome"] == "sent" for r in got) == fake.survey_count() == 1
    assert sum(r["reason"] == "not_sent" for r in got) == 5
    # Never attempted: no dead letters; the re-run of the same command sends them.
    assert (tmp_path / "dead").read_bytes() == b""
    assert b"interrupted while sending" in err
    assert b"re-run the same command to resume; 5 surveys not yet sent" in err


def test_report_to_stdout_beside_ndjson_writes_each_record_once(setup):
    result = send(setup, "-n", "--report", "-", "-", input=ndjson(event(1)))
    assert len(records(result.stdout)) == 2


def test_a_ledger_path_with_odd_characters_works_for_dry_runs(setup):
    path = setup / "my #1 ledger?.sqlite3"
    send(setup, "--ledger", str(path), "-", input=ndjson(event(1)))
    dry = send(setup, "-n", "--ledger", str(path), "-", input=ndjson(event(1)))
    assert dry.exit_code == 0 and {r["reason"] for r in records(dry.stdout)} == {"already_sent"}


@pytest.mark.parametrize("key", ["key\u200bwith-zero-width", "key\nwith-newline", "key with space"])
def test_a_key_no_header_can_carry_is_refused_before_anything_is_read(setup, monkeypatch, key):
    monkeypatch.setenv("RETENTLY_API_KEY", key)
    result = send(setup, "-", input=ndjson(event(1)))
    assert result.exit_code == 2 and result.stdout == ""
    assert "has characters an API key cannot have" in result.stderr
    assert "Traceback" not in result.stderr and key not in result.stderr


def test_a_failed_event_too_deep_to_copy_still_gets_a_dead_letter_line(setup, fake):
    fake.refused_emails = {"u1@example.com"}
    # a context 300 levels deep: deeper than JSON writers go (orjson stops at 255)
    line = orjson.dumps(event(1, name="Ticket Closed"))[:-1]
    line += b',"context":' + b'{"x":' + b'{"a":' * 300 + b"{}" + b"}" * 301 + b"}\n"
    dead = setup / "failed.ndjson"
    result = send(setup, "--failed", str(dead), "-", input=line)
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    [written] = [orjson.loads(x) for x in dead.read_bytes().splitlines()]
    assert written["messageId"] == "m1" and written["_retently"]["reason"] == "rejected"
    assert "too deeply nested" in written["_retently"]["note"]
