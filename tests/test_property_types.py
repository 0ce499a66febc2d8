"""What Retently receives as properties: one type per name per run, empty values left out,
numbers it can hold, dates it reads without shifting (issue 12)."""

from __future__ import annotations

import orjson
import pytest
from helpers import NPS, records, run
from hypothesis import given, settings
from hypothesis import strategies as st

from retently_cli.subscriber import PropertyTypes, build_subscriber, infer, iso_date

EMAIL = "ann@example.com"


def props(subscriber: dict) -> dict:
    return {p["label"]: (p["type"], p["value"]) for p in subscriber.get("properties", [])}


def build(run: PropertyTypes, **properties):
    return build_subscriber(EMAIL, properties, types=run)


# --- one type per property per run ------------------------------------------------------------


def test_the_first_type_seen_holds_for_the_run_and_later_values_convert_to_it():
    run = PropertyTypes()
    first, _ = build(run, plan="pro", seats=3)
    second, notes = build(run, plan=7, seats="4")
    assert props(first) == {"plan": ("string", "pro"), "seats": ("integer", 3)}
    assert props(second) == {"plan": ("string", "7"), "seats": ("integer", 4)}
    assert len(notes) == 2
    assert "property 'plan': 7 sent as string" in notes[0]
    assert run.conflicts == {("plan", "integer"): 1, ("seats", "string"): 1}


def test_a_value_that_cannot_take_the_runs_type_is_left_out_and_noted():
    run = PropertyTypes()
    build(run, revenue=40)
    later, notes = build(run, revenue=42.5, plan="pro")
    assert props(later) == {"plan": ("string", "pro")}
    assert notes == [
        "property 'revenue': 42.5 is not an integer, the type 'revenue' first had in this run; "
        "left out"
    ]
    assert run.left_out == {"revenue": 1}
    assert run.conflicts == {("revenue", "string"): 1}


def test_a_forced_type_wins_over_the_first_value_seen():
    run = PropertyTypes({"plan": "string", "seats": "integer"})
    first, _ = build(run, plan=7, seats="12")
    second, notes = build(run, plan=True, seats="many")
    assert props(first) == {"plan": ("string", "7"), "seats": ("integer", 12)}
    assert props(second) == {"plan": ("string", "true")}
    assert notes == ["property 'seats': 'many' is not an integer (properties.types); left out"]
    assert run.conflicts == {}  # what the config asks for is no conflict


def test_every_event_alone_gets_the_old_per_event_typing():
    """Without a run's memory (a dict of forced types, or nothing) each call starts afresh."""
    assert props(build_subscriber(EMAIL, {"plan": 7})[0]) == {"plan": ("integer", 7)}
    assert props(build_subscriber(EMAIL, {"plan": "pro"})[0]) == {"plan": ("string", "pro")}


def test_a_us_style_date_is_not_guessed_and_is_counted_for_coverage():
    run = PropertyTypes()
    subscriber, notes = build(run, signup_date="01/30/2020")
    assert props(subscriber) == {"signup_date": ("string", "01/30/2020")}
    assert notes == []
    assert run.other_dates == {"signup_date": 1}
    # an ISO date later is converted to the string type the name already has
    later, _ = build(run, signup_date="2020-01-31")
    assert props(later) == {"signup_date": ("string", "2020-01-31")}


def test_a_us_style_date_after_an_iso_date_is_left_out_not_guessed():
    run = PropertyTypes()
    build(run, signup_date="2020-01-30")
    later, notes = build(run, signup_date="01/31/2020")
    assert "properties" not in later
    assert "left out" in notes[0]
    assert run.other_dates == {"signup_date": 1}


def test_forced_date_reads_a_us_style_date():
    run = PropertyTypes({"signup_date": "date"})
    subscriber, notes = build(run, signup_date="01/30/2020")
    assert props(subscriber) == {"signup_date": ("date", "2020-01-30T00:00:00Z")}
    assert notes == [] and run.other_dates == {}


# --- numbers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        (40, ("integer", 40)),
        (40.0, ("string", "40")),  # a float in the JSON: a decimal, whatever its value
        (42.5, ("string", "42.5")),
        (2**63 - 1, ("integer", 2**63 - 1)),
        (-(2**63), ("integer", -(2**63))),
        (2**63, ("string", str(2**63))),
        (-(2**63) - 1, ("string", str(-(2**63) - 1))),
        (1e300, ("string", "1e+300")),
    ],
)
def test_integers_in_signed_64_bits_are_integers_other_numbers_strings(value, expected):
    assert infer(value) == expected


def test_an_integer_type_does_not_take_a_number_outside_64_bits():
    run = PropertyTypes({"n": "integer"})
    subscriber, notes = build(run, n=2**64)
    assert "properties" not in subscriber
    assert "is not an integer" in notes[0]


# --- empty values -----------------------------------------------------------------------------


def test_empty_values_are_left_out_like_nulls_and_named():
    run = PropertyTypes()
    subscriber, notes = build(
        run,
        plan="",
        note="   ",
        roles=[],
        lastName=" ",
        address={"city": "", "zip": None, "street": "Main St"},
        seats=0,
        trial=False,
    )
    assert subscriber == {
        "email": EMAIL,
        "properties": [
            {"label": "address_street", "type": "string", "value": "Main St"},
            {"label": "seats", "type": "integer", "value": 0},
            {"label": "trial", "type": "boolean", "value": False},
        ],
    }
    assert notes == ["left out as empty: plan, note, roles, lastName, address_city"]
    assert run.empty == {"plan": 1, "note": 1, "roles": 1, "address_city": 1}


@pytest.mark.parametrize("value", [[""], [" ", ""], " , "])
def test_a_collection_of_nothing_is_empty_and_blank_items_are_dropped(value):
    subscriber, notes = build_subscriber(EMAIL, {"p": value}, types={"p": "collection"})
    assert "properties" not in subscriber
    assert notes == ["left out as empty: p"]
    subscriber, _ = build_subscriber(EMAIL, {"p": ["a", " ", "", 2]})
    assert props(subscriber) == {"p": ("collection", "a,2")}


def test_an_empty_value_does_not_fix_a_type():
    run = PropertyTypes()
    build(run, plan="")
    subscriber, notes = build(run, plan=3)
    assert props(subscriber) == {"plan": ("integer", 3)}
    assert notes == []


def test_a_forced_type_does_not_send_an_empty_value_either():
    subscriber, notes = build_subscriber(EMAIL, {"p": " "}, types={"p": "string"})
    assert "properties" not in subscriber
    assert notes == ["left out as empty: p"]


# --- dates ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2020-01-30T10:11:12.123456Z", "2020-01-30T10:11:12.123Z"),
        ("2020-01-30T10:11:12.123456789+05:30", "2020-01-30T10:11:12.123+05:30"),
        ("2020-01-30T10:11:12.9999", "2020-01-30T10:11:12.999Z"),
        ("2020-01-30T10:11:12.5", "2020-01-30T10:11:12.5Z"),
        ("2020-01-30T10:11:12.123", "2020-01-30T10:11:12.123Z"),
    ],
)
def test_date_fractions_are_trimmed_to_milliseconds_with_an_explicit_zone(text, expected):
    assert iso_date(text) == expected


# --- through the command: the dry-run predicts what a send sends ------------------------------

CONFIG = f"""\
campaigns:
  "{NPS}": Order Completed
"""


def track(n: int, **properties) -> bytes:
    message = {
        "type": "track",
        "event": "Order Completed",
        "messageId": f"m{n}",
        "properties": {"email": f"u{n}@example.com", **properties},
    }
    return orjson.dumps(message) + b"\n"


EVENTS = (
    track(1, revenue=40, plan="pro", note="")
    + track(2, revenue=42.5, plan=3)
    + track(3, revenue="41", plan=True)
)


def dry_run(config):
    return run("send", "-n", "-o", "ndjson", "-c", str(config), "-", input=EVENTS)


def test_dry_run_records_and_summary_report_conflicts_and_empties(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG)
    result = dry_run(config)
    got = records(result.stdout)
    sent = [props(r["request"]["body"]["subscribers"][0]) for r in got]
    assert sent == [
        {"revenue": ("integer", 40), "plan": ("string", "pro")},
        {"plan": ("string", "3")},
        {"revenue": ("integer", 41), "plan": ("string", "true")},
    ]
    assert got[0]["detail"] == "left out as empty: note"
    assert "'revenue': 42.5 is not an integer" in got[1]["detail"]
    assert "left out" in got[1]["detail"]
    assert "properties: 4 values did not have the type their property has" in result.stderr
    assert "revenue (integer): 1 left out, 1 converted" in result.stderr
    assert "retently coverage" in result.stderr


def test_a_send_sends_exactly_what_the_dry_run_predicted(tmp_path, fake, monkeypatch):
    monkeypatch.setenv("RETENTLY_BASE_URL", fake.url)
    monkeypatch.setenv("RETENTLY_API_KEY", fake.api_key)
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG)
    dry = dry_run(config)
    predicted = [r["request"]["body"]["subscribers"][0] for r in records(dry.stdout)]
    live = run("send", "--no-ledger", "-o", "ndjson", "-c", str(config), "-", input=EVENTS)
    assert live.exit_code == 0, live.output
    assert [s["subscriber"] for s in fake.surveys] == predicted


# --- the rule, for any values -----------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "  ", "pro", "42", "2020-01-30", "01/30/2020", "yes", "a, b", " , "]),
    st.lists(st.sampled_from(["a", "b", 1, True, "", " "]), max_size=2),
)
events = st.lists(
    st.dictionaries(st.sampled_from(["plan", "n", "when", "tags", "firstName"]), scalars),
    max_size=12,
)


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(events, st.dictionaries(st.sampled_from(["plan", "n"]), st.sampled_from(["string",
       "integer", "boolean", "date", "collection"])))  # fmt: skip
def test_no_name_ever_goes_out_with_two_types_or_an_empty_value(properties, forced):
    run = PropertyTypes(forced)
    seen: dict[str, set] = {}
    for one in properties:
        subscriber, _ = build_subscriber(EMAIL, one, types=run)
        for prop in subscriber.get("properties", []):
            seen.setdefault(prop["label"], set()).add(prop["type"])
            assert prop["value"] not in ("", [])
            if prop["type"] == "collection":
                assert all(part.strip() for part in prop["value"].split(","))
            if prop["type"] == "integer":
                assert -(2**63) <= prop["value"] < 2**63
        for label, kind in forced.items():
            assert seen.get(label, {kind}) == {kind}
    assert all(len(kinds) == 1 for kinds in seen.values())


nested = st.one_of(
    scalars,
    st.sampled_from(["2020-01-30T10:00:00", " 2020-01-30", "12/31/2020", "a/b", "\u00e9"]),
    st.dictionaries(st.sampled_from(["x", "n"]), scalars, max_size=2),
)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.dictionaries(st.sampled_from(["plan", "n", "when", "plan_x"]), nested), max_size=8),
    st.dictionaries(
        st.sampled_from(["plan", "n", "plan_x"]),
        st.sampled_from(["string", "integer", "boolean", "date", "collection"]),
    ),  # fmt: skip
)
def test_the_quick_path_for_plain_values_types_them_as_the_full_path_does(properties, forced):
    """``_added`` (a plain value of its property's type) against ``_add_property`` alone:
    the same subscribers, notes and counters, event after event, in the same order (a
    request body is compared byte for byte)."""
    from unittest import mock

    def ordered(run: PropertyTypes) -> dict:
        return {name: list(value.items()) for name, value in vars(run).items()}

    quick, full = PropertyTypes(forced), PropertyTypes(forced)
    for one in properties:
        expected = None
        with mock.patch("retently_cli.subscriber._added", return_value=False):
            expected = build_subscriber(EMAIL, one, types=full)
        assert orjson.dumps(build_subscriber(EMAIL, one, types=quick)) == orjson.dumps(expected)
    assert ordered(quick) == ordered(full)


def test_a_note_quotes_a_long_value_shortened():
    run = PropertyTypes({"n": "integer"})
    _, notes = build(run, n="x" * 100_000)
    assert notes == [f"property 'n': '{'x' * 56}... is not an integer (properties.types); left out"]


def test_quiet_leaves_the_summary_line_out(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG)
    result = run("send", "-n", "-q", "-c", str(config), "-", input=EVENTS)
    assert result.stderr == ""
