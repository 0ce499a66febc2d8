"""`retently ledger status|list|resolve`, on real ledgers filled by real sends to the fake
Retently, and the ledger's location as a live send names it."""

import os
import pty
import sqlite3
import subprocess
from collections import Counter

import helpers
import pytest
from helpers import CSAT, NPS, RETENTLY, ROOT, TEST_KEY, ndjson, records, track

from retently_cli.ledger import Ledger

CONFIG = f"""\
campaigns:
  "{NPS}": "Order Completed"
  "{CSAT}": "Ticket Closed"
batch_size: 1
concurrency: 1
"""


@pytest.fixture
def setup(tmp_path, fake_env):
    (tmp_path / "c.yaml").write_text(CONFIG)
    return tmp_path


def tickets(*numbers):
    return ndjson(*(track("Ticket Closed", f"m{i}", f"u{i}@example.com") for i in numbers))


def run(tmp_path, *args, input=None):
    """The command (``send``, ``ledger status``...) with the test's config, then ``args``."""
    words = 1 if args[0] == "send" else 2
    config = ["-c", str(tmp_path / "c.yaml")]
    return helpers.run(*args[:words], *config, *args[words:], input=input)


def send(tmp_path, *args, input=None):
    return run(tmp_path, "send", "-o", "ndjson", *args, input=input)


def default_ledger(fake, tmp_path):
    port = fake.url.rsplit(":", 1)[1]
    return tmp_path / "xdg-data" / "retently-cli" / f"ledger-127.0.0.1-{port}.sqlite3"


def one_uncertain_of_three(setup, fake):
    """Three tickets sent; the connection of the first broke after Retently got it."""
    fake.inject("drop_after", times=1)
    result = send(setup, "-", input=tickets(0, 1, 2))
    got = Counter((r["message_id"], r["outcome"]) for r in records(result.stdout))
    assert got == {("m0", "uncertain"): 1, ("m1", "sent"): 1, ("m2", "sent"): 1}
    assert fake.survey_count() == 3


def assert_no_key(*results):
    for result in results:
        assert TEST_KEY not in result.stdout + result.stderr


def test_status_names_the_ledger_counts_and_the_exact_next_steps(setup, fake):
    one_uncertain_of_three(setup, fake)
    where = default_ledger(fake, setup)
    status = run(setup, "ledger", "status")
    assert status.exit_code == 0, status.stderr
    out = status.stdout
    assert f"ledger:      {where}" in out and f"API address: {fake.url}" in out
    assert "surveys:     2 sent, 1 uncertain" in out
    assert "first sent:  20" in out and "last sent:   20" in out
    assert f"{CSAT}          2          1" in out  # per campaign: sent, uncertain
    assert f"retently ledger resolve --sent --all-uncertain --ledger {where}" in out
    assert f"retently ledger resolve --not-sent --all-uncertain --ledger {where}" in out
    assert_no_key(status)


@pytest.mark.slow
def test_list_shows_each_survey_and_filters_by_state_and_campaign(setup, fake):
    one_uncertain_of_three(setup, fake)
    send(setup, "-", input=ndjson(track("Order Completed", "o1", "ann@example.com")))
    every = records(run(setup, "ledger", "list", "-o", "ndjson").stdout)
    assert [(r["message_id"], r["campaign"], r["state"]) for r in every] == [
        ("m0", CSAT, "uncertain"), ("m1", CSAT, "sent"), ("m2", CSAT, "sent"), ("o1", NPS, "sent")
    ]  # fmt: skip
    assert every[3]["email"] == "ann@example.com" and every[3]["event"] == "Order Completed"
    assert every[3]["status"] == 200 and every[3]["recorded_at"].endswith("Z")
    uncertain = records(run(setup, "ledger", "list", "--state", "uncertain", "-o", "ndjson").stdout)
    assert [r["email"] for r in uncertain] == ["u0@example.com"]
    by_campaign = records(run(setup, "ledger", "list", "--campaign", NPS, "-o", "ndjson").stdout)
    assert [r["message_id"] for r in by_campaign] == ["o1"]
    table = run(setup, "ledger", "list")
    assert table.exit_code == 0
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["state", "recorded", "campaign", "event", "email", "messageId",
                                "status"]  # fmt: skip
    assert lines[1].split()[0] == "uncertain" and "u0@example.com" in lines[1]
    assert_no_key(table)


def _on_a_terminal(args, **env) -> tuple[int | None, bytes]:
    """(exit code, what a terminal showed) of ``retently ARGS`` with stdout and stderr on a
    pseudo-terminal; ``env`` adds to the environment."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [*RETENTLY, *map(str, args)],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        env={**os.environ, "TERM": "xterm-256color", **env},
        cwd=ROOT,
    )
    os.close(follower)
    try:
        seen = helpers.read_terminal(leader, proc)
    finally:
        proc.kill()
        os.close(leader)
    return proc.returncode, seen


@pytest.mark.slow
def test_list_on_a_terminal_writes_no_escape_code_under_no_color(setup, fake):
    """The table is drawn by the same console as every other one: NO_COLOR means no colour
    and no bold either, as the README says of every output."""
    send(setup, "-", input=tickets(1))
    returncode, seen = _on_a_terminal(["ledger", "list", "-c", setup / "c.yaml"], NO_COLOR="1")
    assert returncode == 0
    assert b"u1@example.com" in seen and b"messageId" in seen
    assert b"\x1b" not in seen


@pytest.mark.slow
@pytest.mark.parametrize("command", [["list"], ["status"]])
def test_ledger_commands_take_color_as_every_command_does(setup, fake, command):
    """The README says every command has --color: the ledger's had none (a usage error)."""
    send(setup, "-", input=tickets(1))
    returncode, seen = _on_a_terminal(
        ["ledger", *command, "-c", setup / "c.yaml", "--color", "never"]
    )
    assert returncode == 0, seen
    assert b"ledger" in seen or b"u1@example.com" in seen
    assert b"\x1b" not in seen


@pytest.mark.slow
def test_resolve_not_sent_from_a_list_makes_the_next_send_send_it(setup, fake):
    one_uncertain_of_three(setup, fake)
    listed = run(setup, "ledger", "list", "--state", "uncertain", "-o", "ndjson").stdout
    resolved = run(setup, "ledger", "resolve", "--not-sent", "-", input=listed)
    assert resolved.exit_code == 0, resolved.stderr
    assert "1 uncertain survey marked not sent: the next send sends it" in resolved.stdout
    again = records(send(setup, "-", input=tickets(0, 1, 2)).stdout)
    assert Counter((r["message_id"], r["outcome"]) for r in again) == {
        ("m0", "sent"): 1, ("m1", "skipped"): 1, ("m2", "skipped"): 1
    }  # fmt: skip
    assert fake.survey_count() == 4  # m0 once more, as asked


@pytest.mark.slow
def test_resolve_sent_closes_them_and_the_next_send_skips_them(setup, fake):
    one_uncertain_of_three(setup, fake)
    resolved = run(setup, "ledger", "resolve", "--sent", "--all-uncertain")
    assert resolved.exit_code == 0 and "1 uncertain survey marked sent" in resolved.stdout
    again = send(setup, "-", input=tickets(0, 1, 2))
    assert again.exit_code == 0  # nothing uncertain any more
    assert {(r["outcome"], r["reason"]) for r in records(again.stdout)} == {
        ("skipped", "already_sent")
    }
    assert fake.survey_count() == 3
    status = run(setup, "ledger", "status").stdout
    assert "surveys:     3 sent\n" in status and "ledger resolve" not in status


@pytest.mark.slow
def test_resolve_reads_a_sends_report_and_failed_file_and_leaves_others_alone(setup, fake):
    fake.inject("drop_after", times=1)
    failed = setup / "failed.ndjson"
    report = send(setup, "--failed", str(failed), "-", input=tickets(0, 1)).stdout
    resolved = run(setup, "ledger", "resolve", "--sent", str(failed))
    assert "1 uncertain survey marked sent" in resolved.stdout
    fake.inject("drop_after", times=1)
    report = send(setup, "-", input=tickets(2, 3)).stdout  # m2 uncertain, m3 sent
    from_report = run(setup, "ledger", "resolve", "--not-sent", "-", input=report)
    assert "1 uncertain survey marked not sent" in from_report.stdout
    named = ndjson({"key": "m1", "campaign": CSAT}, {"key": "nobody", "campaign": CSAT})
    again = run(setup, "ledger", "resolve", "--not-sent", "-", input=named)
    assert again.exit_code == 0
    assert "0 uncertain surveys marked not sent" in again.stdout
    assert "1 named were not uncertain: left as they were" in again.stdout
    assert "1 named are not in ledger" in again.stdout
    states = {r["message_id"]: r["state"] for r in records(run(setup, "ledger", "list", "-o",
                                                               "ndjson").stdout)}  # fmt: skip
    assert states == {"m0": "sent", "m1": "sent", "m3": "sent"}  # m2 forgotten: resent next


def test_a_line_naming_no_survey_changes_nothing(setup, fake):
    one_uncertain_of_three(setup, fake)
    for bad in (b"not json\n", b'{"email": "u0@example.com"}\n'):
        result = run(setup, "ledger", "resolve", "--sent", "-", input=bad)
        assert result.exit_code == 2 and "line 1" in result.stderr
    assert "1 uncertain" in run(setup, "ledger", "status").stdout


@pytest.mark.parametrize(
    "args", [["--all-uncertain"], ["--sent"], ["--sent", "--all-uncertain", "-"]]
)
def test_resolve_wants_one_verdict_and_one_selection(setup, args):
    result = run(setup, "ledger", "resolve", *args, input="")
    assert result.exit_code == 2


def test_reading_commands_never_create_a_ledger(setup, fake):
    where = default_ledger(fake, setup)
    status = run(setup, "ledger", "status")
    assert status.exit_code == 0 and "no ledger there yet" in status.stdout
    listed = run(setup, "ledger", "list")
    assert listed.exit_code == 0 and f"no ledger at {where}" in listed.stderr
    resolved = run(setup, "ledger", "resolve", "--sent", "--all-uncertain")
    assert resolved.exit_code == 2 and f"no ledger at {where}" in resolved.stderr
    assert not where.parent.exists() or os.listdir(where.parent) == []


def test_reading_commands_leave_the_ledger_as_it_was(setup, fake):
    one_uncertain_of_three(setup, fake)
    where = default_ledger(fake, setup)
    before = where.read_bytes()
    run(setup, "ledger", "status")
    run(setup, "ledger", "list", "-o", "ndjson")
    assert where.read_bytes() == before
    wal = where.with_name(where.name + "-wal")  # SQLite's reader may leave an empty one
    assert not wal.exists() or wal.stat().st_size == 0


def test_while_a_send_holds_the_ledger_resolve_is_refused(setup, fake):
    one_uncertain_of_three(setup, fake)
    where = default_ledger(fake, setup)
    running = Ledger(where)  # a send in progress, with a survey in flight
    running.begin([("m9", CSAT, "u9@example.com", None, "Ticket Closed")])
    try:
        refused = run(setup, "ledger", "resolve", "--not-sent", "--all-uncertain")
        assert refused.exit_code == 2 and "another run is using this ledger" in refused.stderr
        status = run(setup, "ledger", "status").stdout
        assert "2 sent, 1 uncertain, 1 in_flight" in status
        assert f"a run is using this ledger now (pid {os.getpid()})" in status
    finally:
        running.close()
    after = run(setup, "ledger", "status").stdout  # that run died: m9 is uncertain now
    assert "2 sent, 2 uncertain" in after


def test_retently_ledger_chooses_the_ledger_for_send_and_ledger(setup, fake, monkeypatch):
    chosen = setup / "chosen.sqlite3"
    monkeypatch.setenv("RETENTLY_LEDGER", str(chosen))
    sent = send(setup, "-", input=tickets(1))
    assert sent.exit_code == 0 and f"ledger: {chosen} (new)" in sent.stderr
    assert chosen.exists() and not default_ledger(fake, setup).exists()
    status = run(setup, "ledger", "status")
    assert f"ledger:      {chosen}" in status.stdout and "1 sent" in status.stdout
    other = setup / "other.sqlite3"
    flag_wins = run(setup, "ledger", "status", "--ledger", str(other))
    assert f"ledger:      {other}" in flag_wins.stdout and not other.exists()
    assert "RETENTLY_LEDGER" in run(setup, "send", "--help").stdout
    assert "RETENTLY_LEDGER" in run(setup, "ledger", "status", "--help").stdout


@pytest.mark.slow
def test_a_live_send_names_its_ledger_and_warns_when_a_new_one_meets_a_backfill(setup, fake):
    where = default_ledger(fake, setup)
    folder = setup / "export"
    folder.mkdir()
    (folder / "a.ndjson").write_bytes(tickets(1, 2))
    first = send(setup, str(folder))
    # Named once: by the plan when there is one, else by its own line (stdin below).
    assert first.stderr.count(f"ledger: {where}") == 1
    assert f"ledger: {where} (new" in first.stderr
    assert f"warning: ledger {where} is new: nothing is known here of earlier runs" in first.stderr
    again = send(setup, str(folder))
    assert f"ledger: {where} (holding 2 sent" in again.stderr and "is new" not in again.stderr
    quiet = send(setup, "-q", str(folder))
    assert "ledger:" not in quiet.stderr
    dry = send(setup, "-n", str(folder))
    assert "ledger:" not in dry.stderr
    small = send(setup, "--ledger", str(setup / "small.sqlite3"), "-", input=tickets(3))
    assert "(new)" in small.stderr and "is new" not in small.stderr
    named = send(setup, "--ledger", str(setup / "named.sqlite3"), str(folder))
    assert "(new: " in named.stderr and "is new" not in named.stderr  # chosen on purpose
    assert_no_key(first, again, small)


@pytest.mark.slow
def test_retry_uncertain_still_resends_them_all(setup, fake):
    one_uncertain_of_three(setup, fake)
    forced = send(setup, "--retry-uncertain", "-", input=tickets(0, 1, 2))
    assert forced.exit_code == 0 and fake.survey_count() == 4
    assert "surveys:     3 sent\n" in run(setup, "ledger", "status").stdout


@pytest.mark.slow
def test_subprocess_status_and_resolve_from_a_pipe(setup, fake):
    fake.inject("drop_after", times=1)
    chosen = setup / "piped.sqlite3"
    env = {**os.environ, "RETENTLY_LEDGER": str(chosen), "NO_COLOR": "1"}
    command = [*RETENTLY]
    config = ["-c", str(setup / "c.yaml")]

    def words(args):
        return 1 if args[0] == "send" else 2

    def call(*args, input=b""):
        return subprocess.run(
            [*command, *args[:words(args)], *config, *args[words(args):]], input=input, env=env,
            capture_output=True, cwd=ROOT, timeout=60,
        )  # fmt: skip

    sent = call("send", "-o", "ndjson", "-", input=tickets(0, 1))
    assert sent.returncode == 1 and f"ledger: {chosen} (new)".encode() in sent.stderr
    listed = call("ledger", "list", "--state", "uncertain", "-o", "ndjson")
    assert [r["message_id"] for r in records(listed.stdout)] == ["m0"]
    resolved = call("ledger", "resolve", "--sent", "-", input=listed.stdout)
    assert resolved.returncode == 0 and b"1 uncertain survey marked sent" in resolved.stdout
    status = call("ledger", "status")
    assert status.returncode == 0 and b"surveys:     2 sent\n" in status.stdout
    for result in (sent, listed, resolved, status):
        assert TEST_KEY.encode() not in result.stdout + result.stderr


def test_list_while_a_send_runs_tells_in_flight_from_uncertain(setup, fake):
    one_uncertain_of_three(setup, fake)
    running = Ledger(default_ledger(fake, setup))
    running.begin([("m9", CSAT, "u9@example.com", None, "Ticket Closed")])
    try:
        every = records(run(setup, "ledger", "list", "-o", "ndjson").stdout)
        uncertain = records(run(setup, "ledger", "list", "--state", "uncertain", "-o",
                                "ndjson").stdout)  # fmt: skip
    finally:
        running.close()
    assert {r["message_id"]: r["state"] for r in every}["m9"] == "in_flight"
    assert [r["message_id"] for r in uncertain] == ["m0"]


def test_a_ledger_of_an_earlier_version_is_read_and_settled(setup):
    where = setup / "old.sqlite3"
    old = sqlite3.connect(where)  # before this version: no email, no event name
    old.executescript(
        "CREATE TABLE deliveries (event_key TEXT NOT NULL, campaign TEXT NOT NULL, "
        "state TEXT NOT NULL, email_hash TEXT NOT NULL, event_time REAL, "
        "updated_at REAL NOT NULL, status INTEGER, PRIMARY KEY (event_key, campaign)) "
        "WITHOUT ROWID;"
        f"INSERT INTO deliveries VALUES ('a', '{NPS}', 'uncertain', 'h', NULL, 1.0, NULL);"
    )
    old.commit()
    old.close()
    listed = records(run(setup, "ledger", "list", "--ledger", str(where), "-o", "ndjson").stdout)
    assert [(r["key"], r["email"], r["state"]) for r in listed] == [("a", None, "uncertain")]
    settled = run(setup, "ledger", "resolve", "--ledger", str(where), "--sent", "--all-uncertain")
    assert settled.exit_code == 0 and "1 uncertain survey marked sent" in settled.stdout


def test_reading_commands_do_not_rename_a_ledger_under_an_older_name(tmp_path, monkeypatch):
    (tmp_path / "c.yaml").write_text(CONFIG)
    monkeypatch.setenv("RETENTLY_BASE_URL", "http://localhost:8787")
    folder = tmp_path / "xdg-data" / "retently-cli"
    folder.mkdir(parents=True)
    old = folder / "ledger-localhost-8787.sqlite3"  # the name versions before 0.2 gave it
    Ledger(old).close()
    status = run(tmp_path, "ledger", "status")
    assert f"ledger:      {old}" in status.stdout and "surveys:     0 sent" in status.stdout
    assert old.exists() and not (folder / "ledger-127.0.0.1-8787.sqlite3").exists()


def test_a_failed_file_names_events_without_a_message_id_by_their_content(setup, fake):
    bare = {k: v for k, v in track("Ticket Closed", None, "bo@example.com").items()
            if k != "messageId"}  # fmt: skip
    failed = setup / "failed.ndjson"
    fake.inject("drop_after", times=1)
    assert send(setup, "--failed", str(failed), "-", input=ndjson(bare)).exit_code == 1
    listed = records(run(setup, "ledger", "list", "-o", "ndjson").stdout)
    assert listed[0]["key"].startswith("sha256:") and listed[0]["message_id"] is None
    resolved = run(setup, "ledger", "resolve", "--not-sent", str(failed))
    assert "1 uncertain survey marked not sent" in resolved.stdout
    again = records(send(setup, "-", input=ndjson(bare)).stdout)
    assert [r["outcome"] for r in again] == ["sent"] and fake.survey_count() == 2


def test_a_file_that_is_no_ledger_is_refused_and_left_alone(setup):
    where = setup / "notes.sqlite3"
    where.write_bytes(b"my notes\n")
    for command in ("status", "list"):
        refused = run(setup, "ledger", command, "--ledger", str(where))
        assert refused.exit_code == 2 and "not an SQLite database" in refused.stderr
    assert where.read_bytes() == b"my notes\n"
