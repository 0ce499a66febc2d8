"""The matching engine (retently_cli.matching): which campaigns an event triggers, and why not."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retently_cli.config import parse_config
from retently_cli.matching import (
    DUPLICATE,
    INVALID_EMAIL,
    MISSING_EMAIL,
    MISSING_EVENT,
    NO_CAMPAIGN,
    NOT_TRACK,
    Matcher,
    NearMisses,
    bounded_levenshtein,
)

CONFIG = """
campaigns:
  nps: "Order Placed, Signed Up"
  csat:
    events: ["Order Placed", "Support Ticket Closed"]
  ces: "Buy"
"""


def matcher(yaml_text: str = CONFIG) -> Matcher:
    return Matcher(parse_config(yaml_text))


def track(name="Signed Up", email="ann@example.com", message_id=None, **extra) -> dict:
    event = {"type": "track", "event": name, "properties": {}}
    if email is not None:
        event["properties"]["email"] = email
    if message_id is not None:
        event["messageId"] = message_id
    event.update(extra)
    return event


def only(decisions):
    assert len(decisions) == 1, decisions
    return decisions[0]


# --- reasons ----------------------------------------------------------------------------------


def test_matched_track_is_surveyed():
    d = only(matcher().decide(track("Signed Up", message_id="m1")))
    assert d.reason is None
    assert d.campaign.id == "nps"
    assert d.event == "Signed Up"
    assert d.message_id == "m1"
    assert d.email == "ann@example.com"
    assert d.subscriber == {"email": "ann@example.com"}
    assert d.detail is None


@pytest.mark.parametrize("kind", ["identify", "page", "screen", "group", "alias", "Track", ""])
def test_other_call_types_are_not_track(kind):
    d = only(matcher().decide({"type": kind, "event": "Signed Up", "traits": {}}))
    assert d.reason == NOT_TRACK
    assert d.campaign is None
    assert d.subscriber is None


def test_not_track_detail_names_the_call_type():
    d = only(matcher().decide({"type": "identify", "traits": {"email": "a@b.co"}}))
    assert d.reason == NOT_TRACK
    assert d.detail == "identify call"


def test_object_with_neither_type_nor_event_is_not_track():
    d = only(matcher().decide({"userId": "u1", "properties": {"email": "a@b.co"}}))
    assert d.reason == NOT_TRACK
    assert d.detail == "no type and no event name"


def test_object_with_an_event_and_no_type_counts_as_a_track():
    d = only(matcher().decide({"event": "Signed Up", "properties": {"email": "a@b.co"}}))
    assert d.reason is None
    assert d.campaign.id == "nps"


@pytest.mark.parametrize(
    "event",
    [
        {"type": "track", "properties": {"email": "a@b.co"}},
        {"type": "track", "event": "", "properties": {"email": "a@b.co"}},
        {"type": "track", "event": None, "properties": {"email": "a@b.co"}},
        {"type": "track", "event": 42, "properties": {"email": "a@b.co"}},
        {"event": None},
    ],
)
def test_track_without_event_name_is_missing_event(event):
    d = only(matcher().decide(event))
    assert d.reason == MISSING_EVENT
    assert d.campaign is None


def test_unmapped_event_is_no_campaign_without_hint():
    d = only(matcher().decide(track("Page Viewed")))
    assert d.reason == NO_CAMPAIGN
    assert d.campaign is None
    assert d.hint is None
    assert d.detail is None


def test_missing_email_reason():
    d = only(matcher().decide(track("Signed Up", email=None)))
    assert (d.reason, d.email, d.subscriber) == (MISSING_EMAIL, None, None)
    assert d.detail == "no email at properties.email"


@pytest.mark.parametrize(
    "email",
    ["john", "john@example", "john doe@example.com", "@example.com", "a@@b.com", "a@b.", "a@.b c"],
)
def test_invalid_email_reason(email):
    d = only(matcher().decide(track("Signed Up", email=email)))
    assert d.reason == INVALID_EMAIL
    assert d.email == email
    assert d.subscriber is None
    assert d.detail == "properties.email is not an email address"


def test_email_is_trimmed():
    d = only(matcher().decide(track("Signed Up", email="  ann@example.com\t")))
    assert d.reason is None
    assert d.email == "ann@example.com"
    assert d.subscriber["email"] == "ann@example.com"


# --- campaigns and exact names ----------------------------------------------------------------


def test_event_under_two_campaigns_yields_one_survey_per_campaign():
    decisions = matcher().decide(track("Order Placed", message_id="m1"))
    assert [d.campaign.id for d in decisions] == ["nps", "csat"]
    assert all(d.reason is None for d in decisions)
    assert all(d.subscriber == {"email": "ann@example.com"} for d in decisions)


def test_event_under_two_campaigns_missing_email_is_reported_for_each():
    decisions = matcher().decide(track("Order Placed", email=None))
    assert [(d.campaign.id, d.reason) for d in decisions] == [
        ("nps", MISSING_EMAIL),
        ("csat", MISSING_EMAIL),
    ]


@pytest.mark.parametrize("name", ["order placed", "ORDER PLACED", "Order Placed ", " Order Placed"])
def test_matching_is_exact_and_case_sensitive(name):
    d = only(matcher().decide(track(name)))
    assert d.reason == NO_CAMPAIGN
    assert d.hint == "Order Placed"


def test_names_with_commas_and_spaces_from_list_form_match_exactly():
    m = matcher('campaigns:\n  c1:\n    events: ["Order, Placed", " Padded "]\n')
    assert only(m.decide(track("Order, Placed"))).reason is None
    assert only(m.decide(track(" Padded "))).reason is None
    assert only(m.decide(track("Padded"))).reason == NO_CAMPAIGN


# --- near misses ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, hint",
    [
        ("order placed", "Order Placed"),
        ("ORDER PLACED", "Order Placed"),
        ("Order Placed ", "Order Placed"),
        ("  Order Placed", "Order Placed"),
        ("Order  Placed", "Order Placed"),
        ("Order\tPlaced", "Order Placed"),
        ("OrderPlaced", "Order Placed"),
        ("Order Placd", "Order Placed"),
        ("Ordr Placed", "Order Placed"),
        ("Order Placed!", "Order Placed"),
        ("Oder Placd", "Order Placed"),
        ("order placd ", "Order Placed"),
        ("Signed-Up", "Signed Up"),
        ("Support Ticket Closd", "Support Ticket Closed"),
        ("buy", "Buy"),
        (" BUY ", "Buy"),
    ],
)
def test_near_miss_hint(name, hint):
    d = only(matcher().decide(track(name)))
    assert d.reason == NO_CAMPAIGN
    assert d.hint == hint
    assert d.detail == f"did you mean '{hint}'?"


@pytest.mark.parametrize(
    "name",
    [
        "Page Viewed",
        "Checkout Started",
        "Order",
        "Order Placed Twice",
        "Ordr Plcd",  # three edits
        "Signed In",  # a different event two edits from 'Signed Up', not a typo of it
        "Bye",  # a typo, but 'Buy' is too short to guess from
        "Buys",
        "Bu",
        "B",
        "x",
    ],
)
def test_no_hint_for_unrelated_or_very_short_names(name):
    d = only(matcher().decide(track(name)))
    assert d.reason == NO_CAMPAIGN
    assert d.hint is None
    assert d.detail is None


def test_hint_prefers_the_closest_mapped_name():
    m = matcher('campaigns:\n  c1: "Plan Upgraded, Plan Upgrades"\n')
    assert only(m.decide(track("plan upgraded"))).hint == "Plan Upgraded"
    m = matcher('campaigns:\n  c1: "Order Placed, Order Plated"\n')
    assert only(m.decide(track("Order Platted"))).hint == "Order Plated"  # 2 edits vs 1
    assert only(m.decide(track("Order Plaaced"))).hint == "Order Placed"  # 1 edit vs 2


def test_case_only_difference_wins_over_an_earlier_typo_match():
    m = matcher('campaigns:\n  c1: "Order Placet, Order placed"\n')
    assert only(m.decide(track("ORDER PLACED"))).hint == "Order placed"


def test_each_distinct_unmatched_name_is_judged_once(monkeypatch):
    calls = []
    original = NearMisses._closest

    def counting(self, name):
        calls.append(name)
        return original(self, name)

    monkeypatch.setattr(NearMisses, "_closest", counting)
    m = matcher()
    for _ in range(3):
        assert only(m.decide(track("order placed"))).hint == "Order Placed"
        assert only(m.decide(track("Page Viewed"))).hint is None
    assert sorted(calls) == ["Page Viewed", "order placed"]


def test_matched_events_never_compute_hints(monkeypatch):
    def boom(self, name):
        raise AssertionError(f"hint computed for {name!r}")

    monkeypatch.setattr(NearMisses, "_closest", boom)
    m = matcher()
    assert only(m.decide(track("Signed Up"))).reason is None
    assert only(m.decide({"type": "identify", "event": "Signed Upp"})).reason == NOT_TRACK


# --- email paths ------------------------------------------------------------------------------

PATHS_CONFIG = CONFIG + "email_paths: [context.traits.email, properties.email]\n"


def with_emails(properties_email=None, context_email=None, traits_email=None) -> dict:
    event = {"type": "track", "event": "Signed Up", "properties": {}}
    if properties_email is not None:
        event["properties"]["email"] = properties_email
    if context_email is not None:
        event["context"] = {"traits": {"email": context_email}}
    if traits_email is not None:
        event["traits"] = {"email": traits_email}
    return event


@pytest.mark.parametrize(
    "kwargs, email",
    [
        ({"properties_email": "p@example.com", "context_email": "c@example.com"}, "c@example.com"),
        ({"properties_email": "p@example.com"}, "p@example.com"),
        ({"properties_email": "p@example.com", "context_email": ""}, "p@example.com"),
        ({"properties_email": "p@example.com", "context_email": "   "}, "p@example.com"),
        ({"properties_email": "p@example.com", "context_email": 42}, "p@example.com"),
        (
            {"properties_email": "p@example.com", "context_email": ["c@example.com"]},
            "p@example.com",
        ),
        ({"context_email": "c@example.com"}, "c@example.com"),
    ],
)
def test_email_paths_in_order_first_non_empty_string_wins(kwargs, email):
    d = only(matcher(PATHS_CONFIG).decide(with_emails(**kwargs)))
    assert d.reason is None
    assert d.email == email
    assert d.subscriber["email"] == email


def test_first_non_empty_email_is_used_even_if_invalid():
    event = with_emails(properties_email="p@example.com", context_email="not-an-email")
    d = only(matcher(PATHS_CONFIG).decide(event))
    assert d.reason == INVALID_EMAIL
    assert d.email == "not-an-email"
    assert d.detail == "context.traits.email is not an email address"


def test_email_only_at_properties_email_survives_context_not_being_a_dict():
    event = with_emails(properties_email="p@example.com")
    event["context"] = "weird"
    d = only(matcher(PATHS_CONFIG).decide(event))
    assert d.email == "p@example.com"


@pytest.mark.parametrize(
    "kwargs, where",
    [
        ({"context_email": "c@example.com"}, "context.traits.email"),
        ({"traits_email": "t@example.com"}, "traits.email"),
        (
            {"context_email": "c@example.com", "traits_email": "t@example.com"},
            "context.traits.email",
        ),
    ],
)
def test_missing_email_says_where_another_email_is(kwargs, where):
    d = only(matcher().decide(with_emails(**kwargs)))
    assert d.reason == MISSING_EMAIL
    assert d.email is None
    assert d.detail == f"email is at {where}, which email_paths does not list"


def test_missing_email_points_back_to_properties_email_when_not_listed():
    m = matcher(CONFIG + "email_paths: [context.traits.email]\n")
    d = only(m.decide(with_emails(properties_email="p@example.com")))
    assert d.reason == MISSING_EMAIL
    assert d.detail == "email is at properties.email, which email_paths does not list"


def test_missing_email_with_nothing_anywhere_lists_the_paths_tried():
    d = only(matcher(PATHS_CONFIG).decide(with_emails(traits_email="")))
    assert d.reason == MISSING_EMAIL
    assert d.detail == "no email at context.traits.email, properties.email"


def test_listed_paths_are_not_repeated_as_elsewhere():
    m = matcher(CONFIG + "email_paths: [properties.email, context.traits.email]\n")
    d = only(m.decide(with_emails(context_email="   ")))
    assert d.reason == MISSING_EMAIL
    assert d.detail == "no email at properties.email, context.traits.email"


# --- duplicates -------------------------------------------------------------------------------


def test_duplicate_message_id_is_surveyed_once():
    m = matcher()
    first = only(m.decide(track("Signed Up", message_id="m1")))
    second = only(m.decide(track("Signed Up", message_id="m1")))
    assert first.reason is None
    assert second.reason == DUPLICATE
    assert second.subscriber is None
    assert second.detail == "messageId seen earlier in this run"
    assert only(m.decide(track("Signed Up", message_id="m2"))).reason is None


def test_duplicate_of_an_event_under_two_campaigns():
    m = matcher()
    first = m.decide(track("Order Placed", message_id="m1"))
    again = m.decide(track("Order Placed", message_id="m1"))
    assert [(d.campaign.id, d.reason) for d in first] == [("nps", None), ("csat", None)]
    assert [(d.campaign.id, d.reason) for d in again] == [("nps", DUPLICATE), ("csat", DUPLICATE)]


def test_duplicate_message_id_across_campaigns():
    m = matcher()
    assert only(m.decide(track("Signed Up", message_id="m1"))).campaign.id == "nps"
    d = only(m.decide(track("Support Ticket Closed", message_id="m1")))
    assert (d.campaign.id, d.reason) == ("csat", DUPLICATE)


def test_duplicate_wins_over_email_problems():
    m = matcher()
    assert only(m.decide(track("Signed Up", email=None, message_id="m1"))).reason == MISSING_EMAIL
    assert only(m.decide(track("Signed Up", email=None, message_id="m1"))).reason == DUPLICATE


@pytest.mark.parametrize("message_id", [None, ""])
def test_without_a_message_id_an_event_is_known_by_its_content(message_id):
    m = matcher()
    reasons = []
    for n in (1, 2, 1):  # the third is a copy of the first, as the ledger would see it
        event = track("Signed Up", n=n)
        if message_id is not None:
            event["messageId"] = message_id
        reasons.append(only(m.decide(event)).reason)
    assert reasons == [None, None, DUPLICATE]


def test_numeric_message_ids_are_reported_as_text_and_deduplicated():
    m = matcher()
    first = only(m.decide(track("Signed Up", message_id=12345)))
    assert first.reason is None
    assert first.message_id == "12345"
    second = only(m.decide(track("Signed Up", message_id=12345)))
    assert second.reason == DUPLICATE
    assert second.message_id == "12345"
    assert only(m.decide(track("Signed Up", message_id=0))).reason is None
    assert only(m.decide(track("Signed Up", message_id=0))).reason == DUPLICATE


def test_message_id_is_reported_on_every_reason():
    m = matcher()
    assert only(m.decide({"type": "page", "messageId": 7})).message_id == "7"
    assert only(m.decide(track("Nope", message_id="x"))).message_id == "x"


def test_separate_matchers_do_not_share_seen_ids():
    assert only(matcher().decide(track(message_id="m1"))).reason is None
    assert only(matcher().decide(track(message_id="m1"))).reason is None


# --- properties reaching the subscriber ------------------------------------------------------


@pytest.mark.parametrize("properties", [None, "not a dict", ["a"], 5])
def test_missing_or_malformed_properties(properties):
    m = matcher(CONFIG + "email_paths: [context.traits.email]\n")
    event = {"type": "track", "event": "Signed Up", "context": {"traits": {"email": "c@ex.com"}}}
    if properties is not None:
        event["properties"] = properties
    d = only(m.decide(event))
    assert d.reason is None
    assert d.subscriber == {"email": "c@ex.com"}


def test_missing_properties_means_missing_email_by_default():
    d = only(matcher().decide({"type": "track", "event": "Signed Up"}))
    assert d.reason == MISSING_EMAIL


PROPERTIES_CONFIG = (
    CONFIG
    + """
properties:
  exclude: [password_hash, plan_id, tags]
  types:
    signup_date: date
    seats: integer
    vip: boolean
    plan_name: string
"""
)


def test_excluded_and_forced_type_properties_reach_the_subscriber():
    event = track(
        "Order Placed",
        message_id="m1",
        email="ann@example.com",
    )
    event["properties"].update(
        {
            "firstName": "Ann",
            "password_hash": "secret",
            "tags": "a, b",
            "signup_date": "01/30/2020",
            "seats": "12",
            "vip": "yes",
            "plan": {"id": 9, "name": 42},
            "note": None,
        }
    )
    decisions = matcher(PROPERTIES_CONFIG).decide(event)
    assert len(decisions) == 2
    for d in decisions:
        assert d.reason is None
        assert d.detail is None
        assert d.subscriber == {
            "email": "ann@example.com",
            "first_name": "Ann",
            "properties": [
                {"label": "signup_date", "type": "date", "value": "2020-01-30T00:00:00Z"},
                {"label": "seats", "type": "integer", "value": 12},
                {"label": "vip", "type": "boolean", "value": True},
                {"label": "plan_name", "type": "string", "value": "42"},
            ],
        }


def test_forced_type_that_cannot_convert_is_left_out_and_noted_in_detail():
    event = track("Signed Up")
    event["properties"].update({"seats": "many", "vip": "perhaps"})
    d = only(matcher(PROPERTIES_CONFIG).decide(event))
    assert d.reason is None
    assert "properties" not in d.subscriber
    assert d.detail == (
        "property 'seats': 'many' is not an integer (properties.types); left out; "
        "property 'vip': 'perhaps' is not a boolean (properties.types); left out"
    )


# --- bounded_levenshtein ----------------------------------------------------------------------


def levenshtein(a: str, b: str) -> int:
    """Plain full-matrix edit distance, the reference."""
    rows = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        rows[i][0] = i
    for j in range(len(b) + 1):
        rows[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            rows[i][j] = min(
                rows[i - 1][j] + 1,
                rows[i][j - 1] + 1,
                rows[i - 1][j - 1] + (a[i - 1] != b[j - 1]),
            )
    return rows[len(a)][len(b)]


@pytest.mark.parametrize(
    "a, b, limit, expected",
    [
        ("", "", 0, 0),
        ("abc", "abc", 0, 0),
        ("abc", "abd", 0, None),
        ("abc", "abd", 1, 1),
        ("", "ab", 2, 2),
        ("", "ab", 1, None),
        ("kitten", "sitting", 3, 3),
        ("kitten", "sitting", 2, None),
        ("order placed", "oder placd", 2, 2),
        ("ab", "ba", 1, None),
        ("ab", "ba", 2, 2),
    ],
)
def test_bounded_levenshtein_examples(a, b, limit, expected):
    assert bounded_levenshtein(a, b, limit) == expected
    assert bounded_levenshtein(b, a, limit) == expected


@settings(max_examples=500, deadline=None)
@given(
    a=st.text(alphabet="abc ", max_size=10),
    b=st.text(alphabet="abc ", max_size=10),
    limit=st.integers(min_value=0, max_value=5),
)
def test_bounded_levenshtein_matches_reference_on_close_strings(a, b, limit):
    distance = levenshtein(a, b)
    assert bounded_levenshtein(a, b, limit) == (distance if distance <= limit else None)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(a=st.text(max_size=16), b=st.text(max_size=16), limit=st.integers(0, 20))
def test_bounded_levenshtein_matches_reference_on_any_strings(a, b, limit):
    distance = levenshtein(a, b)
    assert bounded_levenshtein(a, b, limit) == (distance if distance <= limit else None)


def test_seen_keys_tells_every_repeat_and_no_new_key_for_a_repeat():
    from retently_cli.matching import SeenKeys

    seen = SeenKeys()
    keys = [f"ajs-{n:032x}" for n in range(50_000)] + ["", "é", "sha256:" + "0" * 64]
    assert all(seen.add(key) for key in keys)
    assert not any(seen.add(key) for key in keys)
    assert all(seen.add(key + " ") for key in keys)
    assert seen.count == 2 * len(keys)


@given(
    st.lists(st.text("abcdeAB ", min_size=1, max_size=14), min_size=1, max_size=4),
    st.text("abcdeAB ", max_size=16),
)
def test_near_miss_pre_filters_never_change_the_hint(mapped, name):
    from retently_cli.first_sight import NearMisses, _edit_limit, _normalise, bounded_levenshtein

    best, best_distance = None, None
    for candidate in mapped:
        normal, wanted = _normalise(candidate), _normalise(name)
        if normal == wanted:
            best = candidate
            break
        distance = bounded_levenshtein(wanted, normal, _edit_limit(normal))
        if distance is not None and (best_distance is None or distance < best_distance):
            best, best_distance = candidate, distance
    assert NearMisses(mapped).hint(name) == best
