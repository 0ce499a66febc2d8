"""Event properties -> Retently subscriber object (retently_cli.subscriber)."""

from __future__ import annotations

import pytest

from retently_cli.subscriber import build_subscriber, coerce, infer, iso_date, parse_tags

EMAIL = "john.doe@example.com"


def test_segment_destination_documented_example():
    properties = {
        "email": EMAIL,
        "firstName": "John",
        "lastName": "Doe",
        "companyName": "ACME",
        "tags": "foo, bar, baz",
        "subscription_name": "Professional",
        "signup_date": "01/30/2020",
    }
    subscriber, notes = build_subscriber(EMAIL, properties, types={"signup_date": "date"})
    assert subscriber == {
        "email": EMAIL,
        "first_name": "John",
        "last_name": "Doe",
        "company": "ACME",
        "tags": ["foo", "bar", "baz"],
        "properties": [
            {"label": "subscription_name", "type": "string", "value": "Professional"},
            {"label": "signup_date", "type": "date", "value": "2020-01-30T00:00:00Z"},
        ],
    }
    assert notes == []


def test_us_date_is_not_a_date_unless_forced():
    subscriber, _ = build_subscriber(EMAIL, {"signup_date": "01/30/2020"})
    assert subscriber["properties"] == [
        {"label": "signup_date", "type": "string", "value": "01/30/2020"}
    ]


# --- build_subscriber -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "properties, expected",
    [
        pytest.param({}, {"email": EMAIL}, id="no properties"),
        pytest.param(
            {"first_name": "Ann", "last_name": "Lee", "company": "Initech"},
            {"email": EMAIL, "first_name": "Ann", "last_name": "Lee", "company": "Initech"},
            id="snake_case standard fields",
        ),
        pytest.param(
            {"firstName": "  Ann  ", "companyName": " ACME "},
            {"email": EMAIL, "first_name": "Ann", "company": "ACME"},
            id="standard fields trimmed",
        ),
        pytest.param(
            {"firstName": "Ann", "first_name": "Annie"},
            {"email": EMAIL, "first_name": "Ann"},
            id="first alias wins",
        ),
        pytest.param(
            {"firstName": "   ", "first_name": "Annie"},
            {"email": EMAIL, "first_name": "Annie"},
            id="blank alias does not block the other",
        ),
        pytest.param(
            {"lastName": ""},
            {"email": EMAIL},
            id="empty standard field left out",
        ),
        pytest.param(
            {"email": "other@example.com", "tags": []},
            {"email": EMAIL},
            id="email and tags never become properties",
        ),
        pytest.param(
            {"plan": None, "seats": 3, "trial": False},
            {
                "email": EMAIL,
                "properties": [
                    {"label": "seats", "type": "integer", "value": 3},
                    {"label": "trial", "type": "boolean", "value": False},
                ],
            },
            id="nulls left out, order kept",
        ),
        pytest.param(
            {"company": {"name": "ACME", "id": 7, "address": {"city": "Oslo", "zip": None}}},
            {
                "email": EMAIL,
                "properties": [
                    {"label": "company_name", "type": "string", "value": "ACME"},
                    {"label": "company_id", "type": "integer", "value": 7},
                    {"label": "company_address_city", "type": "string", "value": "Oslo"},
                ],
            },
            id="nested objects flattened with _ and nested nulls dropped",
        ),
        pytest.param(
            {"firstName": 42},
            {
                "email": EMAIL,
                "properties": [{"label": "firstName", "type": "integer", "value": 42}],
            },
            id="non-string standard field stays a property",
        ),
        pytest.param(
            {"revenue": 25.0, "price": 25.5, "roles": ["admin", "billing"]},
            {
                "email": EMAIL,
                "properties": [
                    {"label": "revenue", "type": "string", "value": "25"},
                    {"label": "price", "type": "string", "value": "25.5"},
                    {"label": "roles", "type": "collection", "value": "admin,billing"},
                ],
            },
            id="floats as strings, lists as collections",
        ),
        pytest.param(
            {"tags": ["vip", " beta ", ""]},
            {"email": EMAIL, "tags": ["vip", "beta"]},
            id="tags from a list",
        ),
        pytest.param(
            {"tags": " , "},
            {"email": EMAIL},
            id="tags with nothing in them left out",
        ),
    ],
)
def test_build_subscriber(properties, expected):
    subscriber, notes = build_subscriber(EMAIL, properties)
    assert subscriber == expected
    assert all(note.startswith("left out as empty: ") for note in notes)


@pytest.mark.parametrize(
    "properties, exclude, expected",
    [
        pytest.param(
            {"password_hash": "x", "plan": "pro"},
            {"password_hash"},
            {"email": EMAIL, "properties": [{"label": "plan", "type": "string", "value": "pro"}]},
            id="top-level name",
        ),
        pytest.param(
            {"plan": {"name": "pro", "id": 9}},
            {"plan_id"},
            {
                "email": EMAIL,
                "properties": [{"label": "plan_name", "type": "string", "value": "pro"}],
            },
            id="flattened name",
        ),
        pytest.param(
            {"plan": {"name": "pro", "id": 9}},
            {"plan"},
            {"email": EMAIL},
            id="whole nested object",
        ),
        pytest.param(
            {"tags": "a, b", "firstName": "Ann"},
            {"tags", "firstName"},
            {"email": EMAIL},
            id="tags and standard fields",
        ),
    ],
)
def test_build_subscriber_exclude(properties, exclude, expected):
    subscriber, notes = build_subscriber(EMAIL, properties, frozenset(exclude))
    assert subscriber == expected
    assert notes == []


@pytest.mark.parametrize(
    "value, forced, expected_property",
    [
        ("42", "integer", {"type": "integer", "value": 42}),
        (3, "string", {"type": "string", "value": "3"}),
        ("2020-01-30", "string", {"type": "string", "value": "2020-01-30"}),
        ("yes", "boolean", {"type": "boolean", "value": True}),
        (0, "boolean", {"type": "boolean", "value": False}),
        ("1/2/2020", "date", {"type": "date", "value": "2020-01-02T00:00:00Z"}),
        ("a, b ,,c", "collection", {"type": "collection", "value": "a,b,c"}),
        ("2020-01-30", "date", {"type": "date", "value": "2020-01-30T00:00:00Z"}),
    ],
)
def test_build_subscriber_forced_type(value, forced, expected_property):
    subscriber, notes = build_subscriber(EMAIL, {"p": value}, types={"p": forced})
    assert subscriber["properties"] == [{"label": "p", **expected_property}]
    assert notes == []


@pytest.mark.parametrize(
    "value, forced, note",
    [
        ("pro", "integer", "'pro' is not an integer"),
        (2.5, "integer", "2.5 is not an integer"),
        (2, "boolean", "2 is not a boolean"),
        ("13/45/2020", "date", "is not a date"),
        (1580342400, "date", "is not a date"),
        (True, "integer", "True is not an integer"),
    ],
)
def test_forced_type_that_cannot_convert_is_left_out_with_a_note(value, forced, note):
    """One type per property: a value of another type is not sent at all (issue 12)."""
    subscriber, notes = build_subscriber(EMAIL, {"p": value}, types={"p": forced})
    assert "properties" not in subscriber
    assert len(notes) == 1
    assert note in notes[0]
    assert "'p'" in notes[0]
    assert notes[0].endswith("(properties.types); left out")


def test_forced_type_applies_to_flattened_label():
    subscriber, notes = build_subscriber(
        EMAIL, {"plan": {"seats": "12"}}, types={"plan_seats": "integer"}
    )
    assert subscriber["properties"] == [{"label": "plan_seats", "type": "integer", "value": 12}]
    assert notes == []


def test_forced_type_on_a_standard_name_makes_it_a_property():
    subscriber, _ = build_subscriber(EMAIL, {"company": "42"}, types={"company": "integer"})
    assert "company" not in subscriber
    assert subscriber["properties"] == [{"label": "company", "type": "integer", "value": 42}]


# --- parse_tags -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        ("foo, bar, baz", ["foo", "bar", "baz"]),
        ("foo,bar", ["foo", "bar"]),
        ("  solo  ", ["solo"]),
        (" , a,, b ,", ["a", "b"]),
        ("", []),
        (",,,", []),
        (["x", " y ", "", "  "], ["x", "y"]),
        (["a", "a", " a"], ["a"]),
        ([1, 2.0, 2.5], ["1", "2", "2.5"]),
        (["ok", True, False, None, {"k": "v"}, ["nested"]], ["ok"]),
        ([], []),
        (None, []),
        (42, []),
        ({"a": 1}, []),
    ],
)
def test_parse_tags(value, expected):
    assert parse_tags(value) == expected


# --- infer ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        (True, ("boolean", True)),
        (False, ("boolean", False)),
        (0, ("integer", 0)),
        (-7, ("integer", -7)),
        (10**12, ("integer", 10**12)),
        (25.5, ("string", "25.5")),
        (25.0, ("string", "25")),
        (-0.0, ("string", "0")),
        ("Professional", ("string", "Professional")),
        ("", ("string", "")),
        ("2020-01-30", ("date", "2020-01-30T00:00:00Z")),
        ("2020-01-30T10:11:12", ("date", "2020-01-30T10:11:12Z")),
        ("2015-12-12T19:11:01.249Z", ("date", "2015-12-12T19:11:01.249Z")),
        ("2015-2-02T00:30:08.276Z", ("date", "2015-02-02T00:30:08.276Z")),
        ("2023-02-30", ("string", "2023-02-30")),
        ("01/30/2020", ("string", "01/30/2020")),
        ("2020", ("string", "2020")),
        ("12345", ("string", "12345")),
        ("٢٠٢٠-٠١-٣٠", ("string", "٢٠٢٠-٠١-٣٠")),
        (["a", "b"], ("collection", "a,b")),
        (["a", 1, 2.0, True], ("collection", "a,1,2,true")),
        ([{"a": 1}], ("string", '[{"a":1}]')),
        (["a", None], ("string", '["a",null]')),
        (["é"], ("collection", "é")),
    ],
)
def test_infer(value, expected):
    assert infer(value) == expected


# --- coerce -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, kind, expected",
    [
        # string
        (25, "string", "25"),
        (25.0, "string", "25"),
        (25.5, "string", "25.5"),
        (True, "string", "true"),
        ("2020-01-30", "string", "2020-01-30"),
        ([1, "a"], "string", '[1,"a"]'),
        # integer
        ("42", "integer", 42),
        (" -42 ", "integer", -42),
        ("+7", "integer", 7),
        (3.0, "integer", 3),
        (3.5, "integer", None),
        ("4.0", "integer", None),
        ("1e3", "integer", None),
        ("", "integer", None),
        ([1], "integer", None),
        # boolean
        ("true", "boolean", True),
        ("Yes", "boolean", True),
        (" y ", "boolean", True),
        ("1", "boolean", True),
        ("FALSE", "boolean", False),
        ("no", "boolean", False),
        ("N", "boolean", False),
        ("0", "boolean", False),
        (1, "boolean", True),
        (0.0, "boolean", False),
        (2, "boolean", None),
        ("maybe", "boolean", None),
        (None, "boolean", None),
        # date
        ("01/30/2020", "date", "2020-01-30T00:00:00Z"),
        ("1/2/2020", "date", "2020-01-02T00:00:00Z"),
        (" 12/31/1999 ", "date", "1999-12-31T00:00:00Z"),
        ("02/30/2020", "date", None),
        ("30/01/2020", "date", None),
        ("2020-01-30", "date", "2020-01-30T00:00:00Z"),
        ("2020-01-30T08:00:00+01:00", "date", "2020-01-30T08:00:00+01:00"),
        ("Jan 30 2020", "date", None),
        (1580342400, "date", None),
        # collection
        ("a, b ,,c", "collection", "a,b,c"),
        (["a", None, {"x": 1}, ["y"], 2.0, False], "collection", "a,2,false"),
        (5, "collection", None),
        # unknown
        ("x", "currency", None),
        # far more digits than any integer property holds: refused, not a crash
        ("9" * 5000, "integer", None),
    ],
)
def test_coerce(value, kind, expected):
    result = coerce(value, kind)
    assert result == expected
    assert type(result) is type(expected)


# --- iso_date ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2020-01-30", "2020-01-30T00:00:00Z"),
        ("2020-1-5", "2020-01-05T00:00:00Z"),
        ("  2020-01-30  ", "2020-01-30T00:00:00Z"),
        ("2020-01-30T10:11", "2020-01-30T10:11:00Z"),
        ("2020-01-30 10:11:12", "2020-01-30T10:11:12Z"),
        ("2020-01-30T10:11:12Z", "2020-01-30T10:11:12Z"),
        ("2020-01-30T10:11:12.5", "2020-01-30T10:11:12.5Z"),
        ("2020-01-30T10:11:12.123456+05:30", "2020-01-30T10:11:12.123+05:30"),
        ("2020-01-30T10:11:12-0800", "2020-01-30T10:11:12-08:00"),
        ("2020-01-30T10:11:12+00:00", "2020-01-30T10:11:12+00:00"),
        ("2024-02-29", "2024-02-29T00:00:00Z"),
        # longer than the texts remembered: parsed each time, alike
        ("2020-01-30T10:11:12." + "1" * 40 + "Z", "2020-01-30T10:11:12.111Z"),
        (" " * 50 + "2020-01-30", "2020-01-30T00:00:00Z"),
        # impossible or not ISO-8601: not a date
        ("2023-02-29", None),
        ("2023-02-30", None),
        ("2020-13-01", None),
        ("2020-00-10", None),
        ("2020-01-30T24:00:00", None),
        ("2020-01-30T10:60", None),
        ("2020-01-30T10:11:12+25:00", None),
        ("2020-01-30T10:11:12+05:75", None),
        ("20200130", None),
        ("01/30/2020", None),
        ("2020-01-30T1:00", None),
        ("2020-01-30T10:11:12+05", None),
        ("2020-01-30X", None),
        ("2020-01-30\nx", None),
        ("٢٠٢٠-٠١-٣٠", None),
        ("", None),
    ],
)
def test_iso_date(text, expected):
    assert iso_date(text) == expected
    assert iso_date(text) == expected  # as remembered
