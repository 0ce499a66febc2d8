"""Emails from Identify calls: the identity store, the matcher's use of it, the config key,
and the commands that make the identity pass (send, diff, coverage)."""

from __future__ import annotations

import json
import os

import orjson
import pytest
from helpers import TEST_KEY, ndjson, records, run, run_process, write_gz
from hypothesis import given, settings
from hypothesis import strategies as st

from retently_cli import identities
from retently_cli.config import ConfigError, parse_config
from retently_cli.identities import IdentityStore
from retently_cli.matching import Matcher

CONFIG = """\
campaigns:
  "5e1f9a3c2b7d4e0012ab34cd": "Order Completed"
identities:
  from_identify: true
"""


def identify(user=None, anon=None, at="2024-05-01T10:00:00Z", kind="identify", **traits):
    message = {"type": kind, "timestamp": at, "traits": traits}
    if user is not None:
        message["userId"] = user
    if anon is not None:
        message["anonymousId"] = anon
    return message


def order(message_id, user=None, anon=None, at="2024-05-02T10:00:00Z", **properties):
    message = {"type": "track", "event": "Order Completed", "messageId": message_id,
               "timestamp": at, "properties": properties}  # fmt: skip
    if user is not None:
        message["userId"] = user
    if anon is not None:
        message["anonymousId"] = anon
    return message


def learned(*messages, memory_limit=None) -> IdentityStore:
    store = IdentityStore(memory_limit)
    for message in messages:
        store.learn(message)
    return store


# -- the store -------------------------------------------------------------------------------


def test_the_latest_identify_by_timestamp_wins_whatever_the_input_order():
    store = learned(
        identify("u1", at="2024-05-03T00:00:00Z", email="new@example.com"),
        identify("u1", at="2024-05-01T00:00:00Z", email="old@example.com"),  # read later, older
    )
    assert store.lookup({"userId": "u1"}).email == "new@example.com"


def test_a_tie_in_time_goes_to_the_message_read_later():
    store = learned(identify("u1", email="first@example.com"), identify("u1", email="second@x.org"))
    assert store.lookup({"userId": "u1"}).email == "second@x.org"


def test_each_field_keeps_its_latest_value_a_later_call_without_it_does_not_erase_it():
    store = learned(
        identify("u1", at="2024-05-01T00:00:00Z", email="ann@example.com", firstName="Ann"),
        identify("u1", at="2024-05-02T00:00:00Z", lastName="Lee", company={"name": "Initech"}),
        identify("u1", at="2024-05-03T00:00:00Z", email="  ", first_name=""),  # empty: nothing
    )
    found = store.lookup({"userId": "u1"})
    assert (found.email, found.first_name, found.last_name, found.company) == (
        "ann@example.com", "Ann", "Lee", "Initech",
    )  # fmt: skip
    assert found.source == "identify:userId"


def test_a_message_with_no_readable_time_loses_to_any_with_one():
    store = learned(
        identify("u1", at="2024-05-01T00:00:00Z", email="timed@example.com"),
        identify("u1", at="not a time", email="untimed@example.com"),
    )
    assert store.lookup({"userId": "u1"}).email == "timed@example.com"


def test_context_traits_of_any_call_count_and_an_identifys_own_traits_win_over_them():
    store = learned(
        {"type": "track", "event": "X", "userId": "u1", "timestamp": "2024-05-01T00:00:00Z",
         "context": {"traits": {"email": "ctx@example.com"}}},
        {**identify("u2", email="own@example.com"),
         "context": {"traits": {"email": "ctx@example.com", "firstName": "Cy"}}},
        # a page call's traits are not the user's traits: only context.traits count there
        {"type": "page", "userId": "u3", "traits": {"email": "page@example.com"}},
    )  # fmt: skip
    assert store.lookup({"userId": "u1"}).email == "ctx@example.com"
    assert store.lookup({"userId": "u2"}).email == "own@example.com"
    assert store.lookup({"userId": "u2"}).first_name == "Cy"
    assert store.lookup({"userId": "u3"}) is None


def test_the_anonymous_id_answers_when_the_user_id_knows_no_email():
    store = learned(
        identify("u1", firstName="Ann"),  # this userId: a name, no email
        identify(anon="a1", email="anon@example.com"),
    )
    found = store.lookup({"userId": "u1", "anonymousId": "a1"})
    assert (found.email, found.source, found.first_name) == (
        "anon@example.com", "identify:anonymousId", None,
    )  # fmt: skip
    assert store.lookup({"userId": "nobody", "anonymousId": "nobody"}) is None
    assert store.lookup({}) is None


def test_an_identify_with_both_ids_teaches_both_and_a_numeric_user_id_is_its_string():
    store = learned(identify(12, anon="a1", email="both@example.com"))
    assert store.lookup({"userId": "12"}).email == "both@example.com"
    assert store.lookup({"userId": 12.0}).source == "identify:userId"
    assert store.lookup({"anonymousId": "a1"}).source == "identify:anonymousId"
    assert store.lookup({"userId": True}) is None


def test_past_the_memory_limit_the_store_moves_to_sqlite_and_answers_the_same():
    messages = []
    for i in range(40):  # each user: a newer email, then an older one read later
        messages.append(identify(f"u{i}", at="2024-05-02T00:00:00Z", email=f"new{i}@example.com"))
        messages.append(identify(f"u{i}", anon=f"a{i}", at="2024-05-01T00:00:00Z",
                                 email=f"old{i}@example.com", lastName=f"L{i}"))  # fmt: skip
    store = learned(*messages, memory_limit=5)
    assert store.spilled and not store._memory  # nothing left in the dict
    assert store.count() == 80
    for i in range(40):
        found = store.lookup({"userId": f"u{i}"})
        assert (found.email, found.last_name) == (f"new{i}@example.com", f"L{i}")
        assert store.lookup({"anonymousId": f"a{i}"}).email == f"old{i}@example.com"
    store.learn(identify("u3", at="2024-06-01T00:00:00Z", email="later@example.com"))
    assert store.lookup({"userId": "u3"}).email == "later@example.com"  # learning goes on
    store.close()


_ids = st.sampled_from(["u1", "u2", "u3", None])
_times = st.sampled_from(["2024-05-01T00:00:00Z", "2024-05-01T00:00:00.5Z", "2024-05-02", "bad"])
_values = st.sampled_from([None, "", "a@example.com", "b@example.com", "Ann"])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(_ids, _ids, _times, _values, _values, st.booleans()), min_size=1, max_size=25
    ),
    st.integers(min_value=0, max_value=4),
)
def test_a_spilled_store_answers_exactly_as_one_in_memory(steps, limit):
    messages = []
    for user, anon, at, email, first, in_context in steps:
        traits = {k: v for k, v in (("email", email), ("firstName", first)) if v is not None}
        message = identify(user, anon, at)
        if in_context:
            message = {**message, "type": "track", "context": {"traits": traits}}
        else:
            message["traits"] = traits
        messages.append(message)
    small, big = learned(*messages, memory_limit=limit), learned(*messages)
    for user in ("u1", "u2", "u3"):
        for probe in (
            {"userId": user},
            {"anonymousId": user},
            {"userId": user, "anonymousId": "u1"},
        ):
            assert small.lookup(probe) == big.lookup(probe)
    small.close()


# -- the matcher -------------------------------------------------------------------------------


def test_an_event_without_email_gets_its_users_identity_and_keeps_what_it_carries():
    config = parse_config(CONFIG)
    store = learned(identify("u1", email="ann@example.com", firstName="Annie", lastName="Lee",
                             companyName="Initech"))  # fmt: skip
    matcher = Matcher(config, store.lookup)
    [decision] = matcher.decide(order("m1", user="u1", firstName="Ann", plan="pro"))
    assert decision.reason is None and decision.email_source == "identify:userId"
    assert decision.subscriber == {
        "email": "ann@example.com",
        "first_name": "Ann",  # the event's own name wins
        "last_name": "Lee",
        "company": "Initech",
        "properties": [{"label": "plan", "type": "string", "value": "pro"}],
    }
    # An event that carries an email keeps it, and gets nothing from the identity.
    [own] = matcher.decide(order("m2", user="u1", email="own@example.com"))
    assert own.email_source == "properties.email"
    assert own.subscriber == {"email": "own@example.com"}


def test_every_decision_with_an_email_says_where_it_was_found():
    deep: dict = {}
    for _ in range(2000):  # too deeply nested to be hashed or written back
        deep = {"x": deep}
    matcher = Matcher(parse_config(CONFIG), learned().lookup)
    skipped = order("m1", email="ann@example.com", deep=deep)
    [decision] = matcher.decide(skipped)
    assert (decision.reason, decision.email_source) == ("too_deeply_nested", "properties.email")
    matcher.decide(order("m2", email="a@example.com"))
    [again] = matcher.decide(order("m2", email="a@example.com"))
    assert (again.reason, again.email_source) == ("duplicate", "properties.email")


def test_without_from_identify_the_lookup_is_not_used():
    config = parse_config("campaigns:\n  c: Order Completed\n")
    store = learned(identify("u1", email="ann@example.com"))
    [decision] = Matcher(config, store.lookup).decide(order("m1", user="u1"))
    assert decision.reason == "missing_email" and decision.email_source is None


def test_a_learned_email_that_is_no_address_is_invalid_and_says_where_it_came_from():
    store = learned(identify("u1", email="not-an-email"))
    [decision] = Matcher(parse_config(CONFIG), store.lookup).decide(order("m1", user="u1"))
    assert decision.reason == "invalid_email"
    assert decision.detail == "the email learned by identify:userId is not an email address"


def test_an_excluded_name_property_is_not_filled_in_from_the_identity_either():
    config = parse_config(CONFIG + "properties:\n  exclude: [lastName]\n")
    store = learned(identify("u1", email="ann@example.com", firstName="Ann", lastName="Lee"))
    [decision] = Matcher(config, store.lookup).decide(order("m1", user="u1"))
    assert decision.subscriber == {"email": "ann@example.com", "first_name": "Ann"}


# -- the config --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("identities:\n  from_identfy: true\n",
         "c.yaml:4: identities.from_identfy: unknown key; did you mean 'from_identify'? "
         "(known: from_identify)"),
        ("identities:\n  from_identify: 'yes please'\n",
         "c.yaml:4: identities.from_identify: must be true or false, got 'yes please'"),
        ("identities:\n  from_identify: [true]\n",
         "c.yaml:4: identities.from_identify: must be true or false, got a list"),
        ("identities: true\n", "c.yaml:3: identities: must be a mapping, got 'true'"),
    ],
)  # fmt: skip
def test_the_identities_key_is_validated_with_its_path_and_line(text, expected):
    with pytest.raises(ConfigError) as excinfo:
        parse_config("campaigns:\n  c: X\n" + text, "c.yaml")
    assert excinfo.value.problems == [expected]


def test_from_identify_is_off_unless_set():
    assert parse_config("campaigns:\n  c: X\n").from_identify is False
    assert parse_config("campaigns:\n  c: X\nidentities: {}\n").from_identify is False
    assert parse_config(CONFIG).from_identify is True


def test_check_says_emails_are_learned_from_identify_calls(tmp_path):
    config = tmp_path / "retently.yaml"
    config.write_text(CONFIG)
    result = run("check", "-c", str(config))
    assert result.exit_code == 0
    assert "email looked up at: properties.email\nelse the email learned from Identify calls" in (
        result.stdout
    )


# -- the commands ------------------------------------------------------------------------------

# A Segment S3 export: identify calls in the day folder before the track calls and after them.
DAY1, DAY2, DAY3 = "1714521600000", "1714608000000", "1714694400000"  # 1, 2, 3 May 2024


def export(tmp_path):
    root = tmp_path / "segment-logs" / "src"
    write_gz(root / DAY1 / "a.gz", ndjson(
        identify("u1", at="2024-05-01T09:00:00Z", email="ann@example.com", firstName="Ann"),
        identify("u2", anon="a2", at="2024-05-01T09:00:00Z", email="old-bob@example.com"),
    ))  # fmt: skip
    write_gz(root / DAY2 / "b.gz", ndjson(
        order("m1", user="u1", at="2024-05-02T10:00:00Z"),
        order("m2", user="u2", at="2024-05-02T10:00:00Z"),
        order("m3", anon="a3", at="2024-05-02T10:00:00Z"),  # only the anonymousId is known
        order("m4", user="u1", at="2024-05-02T10:00:00Z", email="own@example.com"),
        order("m5", user="nobody", at="2024-05-02T10:00:00Z"),
    ))  # fmt: skip
    write_gz(root / DAY3 / "c.gz", ndjson(
        identify("u2", at="2024-05-03T08:00:00Z", email="bob@example.com", lastName="Brown"),
        {"type": "page", "anonymousId": "a3", "timestamp": "2024-05-03T08:00:00Z",
         "context": {"traits": {"email": "cy@example.com"}}},
        # read last but older: it does not win
        identify("u1", at="2024-04-01T00:00:00Z", email="stale@example.com"),
    ))  # fmt: skip
    config = tmp_path / "retently.yaml"
    config.write_text(CONFIG)
    return tmp_path / "segment-logs", config


@pytest.mark.slow
def test_send_learns_emails_from_identify_calls_before_and_after_the_tracks(tmp_path):
    logs, config = export(tmp_path)
    temp = tmp_path / "tmp"
    temp.mkdir()
    result = run_process("send", "-n", "-o", "ndjson", "-c", str(config), str(logs),
                 env={"TMPDIR": str(temp)})  # fmt: skip
    assert result.returncode == 0, result.stderr
    got = {r["message_id"]: r for r in records(result.stdout) if r["event"]}
    assert {m: (r["email"], r["email_source"]) for m, r in got.items()} == {
        "m1": ("ann@example.com", "identify:userId"),
        "m2": ("bob@example.com", "identify:userId"),
        "m3": ("cy@example.com", "identify:anonymousId"),
        "m4": ("own@example.com", "properties.email"),
        "m5": (None, None),
    }
    assert got["m5"]["reason"] == "missing_email"
    subscribers = {m: r["request"]["body"]["subscribers"][0] for m, r in got.items() if m != "m5"}
    assert subscribers["m1"] == {"email": "ann@example.com", "first_name": "Ann"}
    assert subscribers["m2"] == {"email": "bob@example.com", "last_name": "Brown"}
    assert subscribers["m4"] == {"email": "own@example.com"}
    assert list(temp.iterdir()) == []  # nothing left behind


def test_a_real_send_delivers_to_the_learned_emails(tmp_path, fake_env):
    logs, config = export(tmp_path)
    ledger = tmp_path / "ledger.sqlite3"
    result = run("send", "-c", str(config), "--ledger", str(ledger), str(logs))
    assert result.exit_code == 0, result.stderr
    got = sorted((s["email"], s["subscriber"].get("last_name")) for s in fake_env.surveys)
    assert got == [
        ("ann@example.com", None), ("bob@example.com", "Brown"), ("cy@example.com", None),
        ("own@example.com", None),
    ]  # fmt: skip


@pytest.mark.slow
def test_since_prunes_the_tracks_folders_but_not_the_identities_before_them(tmp_path):
    logs, config = export(tmp_path)
    window = ["--since", "2024-05-02T10:00Z", "--until", "2024-05-02T11:00Z"]
    result = run_process("send", "-n", "-o", "ndjson", "-v", "-c", str(config), *window,
                 "--max-lateness", "0.5", str(logs))  # fmt: skip
    assert result.returncode == 0, result.stderr
    got = {r["message_id"]: r["email"] for r in records(result.stdout) if r["event"]}
    # DAY1 (before the window) is read for identities; DAY3 is past --until + lateness for both.
    assert got["m1"] == "ann@example.com" and got["m2"] == "old-bob@example.com"
    assert got["m3"] is None
    assert "identities: 3 ids learned from 7 lines (in memory)" in result.stderr.decode()


@pytest.mark.slow
def test_stdin_is_refused_before_anything_is_sent(tmp_path, fake):
    _, config = export(tmp_path)
    data = ndjson(identify("u1", email="ann@example.com"), order("m1", user="u1"))
    env = {"RETENTLY_BASE_URL": fake.url, "RETENTLY_API_KEY": TEST_KEY, "TMPDIR": str(tmp_path)}
    for command in (["send"], ["send", "-n"], ["coverage"]):
        result = run_process(*command, "-c", str(config), "-", input=data, env=env)
        assert result.returncode == 2
        assert result.stdout == b""
        assert result.stderr.decode().strip() == (
            "retently: identities.from_identify reads the input twice (identify calls first), "
            "and stdin cannot be read twice: give the files or folders instead"
        )
    result = run_process("diff", str(config), str(config), input=data, env=env)  # no path: stdin
    assert result.returncode == 2 and b"stdin cannot be read twice" in result.stderr
    assert fake.surveys == [] and fake.requests == []


@pytest.mark.slow
def test_a_fifo_named_on_its_own_is_refused_too(tmp_path):
    _, config = export(tmp_path)
    fifo = tmp_path / "events.fifo"
    os.mkfifo(fifo)
    result = run_process("send", "-n", "-c", str(config), str(fifo))  # refused before it is opened
    assert result.returncode == 2
    assert b"not a regular file, so it cannot be read twice" in result.stderr


@pytest.mark.slow
def test_coverage_counts_the_emails_found_by_identity_and_diff_shows_the_switch(tmp_path):
    logs, config = export(tmp_path)
    result = run_process("coverage", "-o", "json", "-c", str(config), str(logs))
    assert result.returncode == 0, result.stderr
    [row] = json.loads(result.stdout)["events"]
    assert (row["count"], row["email_from_identify"], row["missing_email"]) == (5, 3, 1)
    table = run_process("coverage", "-c", str(config), str(logs))
    assert b"1 without email; 3 with the email from identify calls" in table.stdout
    plain = tmp_path / "plain.yaml"
    plain.write_text(CONFIG.replace("true", "false"))
    result = run_process("diff", "-o", "ndjson", str(plain), str(config), str(logs))
    assert result.returncode == 1
    added = sorted(orjson.loads(line)["message_id"] for line in result.stdout.splitlines())
    assert added == ["m1", "m2", "m3"]


def test_a_run_past_the_memory_limit_spills_and_sends_the_same(tmp_path, monkeypatch):
    logs, config = export(tmp_path)
    args = ["send", "-n", "-o", "ndjson", "-c", str(config), str(logs)]
    before = run(*args)
    monkeypatch.setattr(identities, "MEMORY_LIMIT", 1)
    spilled = run(*args, "-v")
    assert "(in a temporary SQLite file)" in spilled.stderr
    assert records(spilled.stdout) == records(before.stdout)
    assert before.exit_code == spilled.exit_code == 0
