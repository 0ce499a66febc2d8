"""Unit tests of the config: discovery, loading, validation messages and the API key setting."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest

from retently_cli.config import (
    ApiKeySetting,
    Campaign,
    ConfigError,
    find_config,
    load_config,
    parse_config,
)

SECRET = "sk_live_SECRET123"
EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.yaml"
TOP_KEYS = (
    "(known: api_key, campaigns, email_paths, properties, identities, base_url, batch_size, "
    "rate_limit, concurrency, timeout, max_attempts)"
)
EVENT_NAMES = "must be event names: a comma-separated string or a list"
WHOLE_DAYS = "must be a whole number of days (0 or more)"


def parse(text: str):
    return parse_config(dedent(text), "c.yaml")


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as excinfo:
        parse(text)
    assert str(excinfo.value) == "\n".join(excinfo.value.problems)
    return excinfo.value.problems


# -- every validation error, with its key path and line ------------------------------------------

ERRORS = [
    # unknown keys (typos)
    (
        "unknown top-level key with a hint",
        """\
        campaigns:
          a: X
        email_path: [properties.email]
        """,
        f"c.yaml:3: email_path: unknown key; did you mean 'email_paths'? {TOP_KEYS}",
    ),
    (
        "unknown top-level key without a hint",
        """\
        campaigns:
          a: X
        colour: red
        """,
        f"c.yaml:3: colour: unknown key {TOP_KEYS}",
    ),
    (
        "unknown campaign key",
        """\
        campaigns:
          a:
            events: X
            dealy: 3
        """,
        "c.yaml:4: campaigns.a.dealy: unknown key; did you mean 'delay'? (known: events, delay, "
        "once_per_email)",
    ),
    (
        "unknown properties key",
        """\
        campaigns:
          a: X
        properties:
          excludes: [password_hash]
        """,
        "c.yaml:4: properties.excludes: unknown key; did you mean 'exclude'? "
        "(known: exclude, types)",
    ),
    # keys written twice
    (
        "top-level key written twice",
        """\
        api_key: one
        campaigns:
          a: X
        api_key: two
        """,
        "c.yaml:4: api_key: written twice (first on line 1)",
    ),
    (
        "campaign id written twice",
        """\
        campaigns:
          "5e1f": X
          other: Y
          "5e1f": Z
        """,
        "c.yaml:4: campaigns.5e1f: written twice (first on line 2)",
    ),
    (
        "campaign id written twice, once with spaces",
        """\
        campaigns:
          "a": X
          "a ": Y
        """,
        "c.yaml:3: campaigns.a: written twice (first on line 2)",
    ),
    (
        "events written twice",
        """\
        campaigns:
          a:
            events: X
            events: Y
        """,
        "c.yaml:4: campaigns.a.events: written twice (first on line 3)",
    ),
    # campaigns
    (
        "campaigns missing",
        """\
        email_paths: [properties.email]
        """,
        "c.yaml:1: campaigns: is required",
    ),
    (
        "empty campaigns mapping",
        """\
        api_key: x
        campaigns: {}
        """,
        "c.yaml:2: campaigns: must map at least one campaign id to event names",
    ),
    (
        "campaigns left empty",
        """\
        campaigns:
        """,
        "c.yaml:1: campaigns: must map campaign ids to event names, got nothing",
    ),
    (
        "campaigns as a list",
        """\
        campaigns:
          - a
        """,
        "c.yaml:2: campaigns: must map campaign ids to event names, got a list",
    ),
    (
        "empty campaign id",
        """\
        campaigns:
          "": X
        """,
        "c.yaml:2: campaigns: keys must be non-empty strings",
    ),
    (
        "blank campaign id",
        """\
        campaigns:
          "  ": X
        """,
        "c.yaml:2: campaigns: keys must be non-empty strings",
    ),
    (
        "null campaign id",
        """\
        campaigns:
          a: X
          ~: Y
        """,
        "c.yaml:3: campaigns: keys must be non-empty strings",
    ),
    (
        "campaign id that is a list",
        """\
        campaigns:
          ? [a, b]
          : X
        """,
        "c.yaml:2: campaigns: keys must be non-empty strings",
    ),
    (
        "campaign without events",
        """\
        campaigns:
          a:
            delay: 3
        """,
        "c.yaml:3: campaigns.a: needs 'events': the Track event names for this campaign",
    ),
    # event names
    (
        "empty events string",
        """\
        campaigns:
          a: ""
        """,
        "c.yaml:2: campaigns.a: lists no event names",
    ),
    (
        "events string of commas and spaces",
        """\
        campaigns:
          a: " , "
        """,
        "c.yaml:2: campaigns.a: lists no event names",
    ),
    (
        "stray comma inside",
        """\
        campaigns:
          a: "Order Placed,, Dashboard Visited"
        """,
        "c.yaml:2: campaigns.a: has an empty event name (a stray comma?)",
    ),
    (
        "stray comma at the end",
        """\
        campaigns:
          a:
            events: Order Placed,
        """,
        "c.yaml:3: campaigns.a.events: has an empty event name (a stray comma?)",
    ),
    (
        "empty list, short form",
        """\
        campaigns:
          a: []
        """,
        "c.yaml:2: campaigns.a: lists no event names",
    ),
    (
        "empty list, long form",
        """\
        campaigns:
          a:
            events: []
        """,
        "c.yaml:3: campaigns.a.events: lists no event names",
    ),
    (
        "blank name in a list",
        """\
        campaigns:
          a:
            events:
              - Order Placed
              - "  "
        """,
        "c.yaml:5: campaigns.a.events[1]: event name is empty",
    ),
    (
        "null name in a list",
        """\
        campaigns:
          a: [Order Placed, ~]
        """,
        "c.yaml:2: campaigns.a[1]: must be a string, got nothing",
    ),
    (
        "list inside the list",
        """\
        campaigns:
          a: [Order Placed, [b]]
        """,
        "c.yaml:2: campaigns.a[1]: must be a string, got a list",
    ),
    (
        "name listed twice in a string",
        """\
        campaigns:
          a: "Order Placed, Dashboard Visited, Order Placed"
        """,
        "c.yaml:2: campaigns.a: lists 'Order Placed' twice",
    ),
    (
        "name listed twice once trimmed",
        """\
        campaigns:
          a: "Order Placed,Order Placed  "
        """,
        "c.yaml:2: campaigns.a: lists 'Order Placed' twice",
    ),
    (
        "name listed twice in a list, on the line of the repeat",
        """\
        campaigns:
          a:
            events:
              - Order Placed
              - Dashboard Visited
              - Order Placed
        """,
        "c.yaml:6: campaigns.a.events: lists 'Order Placed' twice",
    ),
    (
        "events as a number",
        """\
        campaigns:
          a: 42
        """,
        f"c.yaml:2: campaigns.a: {EVENT_NAMES}, got '42'",
    ),
    (
        "events left empty",
        """\
        campaigns:
          a:
        """,
        f"c.yaml:2: campaigns.a: {EVENT_NAMES}, got nothing",
    ),
    (
        "events as a mapping",
        """\
        campaigns:
          a:
            events: {Order Placed: 1}
        """,
        f"c.yaml:3: campaigns.a.events: {EVENT_NAMES}, got a mapping",
    ),
    # delay
    (
        "negative delay",
        """\
        campaigns:
          a:
            events: X
            delay: -1
        """,
        f"c.yaml:4: campaigns.a.delay: {WHOLE_DAYS}, got '-1'",
    ),
    (
        "delay as a quoted string",
        """\
        campaigns:
          a:
            events: X
            delay: "3"
        """,
        f"c.yaml:4: campaigns.a.delay: {WHOLE_DAYS}, got '3'",
    ),
    (
        "fractional delay",
        """\
        campaigns:
          a:
            events: X
            delay: 1.5
        """,
        f"c.yaml:4: campaigns.a.delay: {WHOLE_DAYS}, got '1.5'",
    ),
    (
        "delay with a unit",
        """\
        campaigns:
          a:
            events: X
            delay: 3 days
        """,
        f"c.yaml:4: campaigns.a.delay: {WHOLE_DAYS}, got '3 days'",
    ),
    (
        "boolean delay",
        """\
        campaigns:
          a:
            events: X
            delay: true
        """,
        f"c.yaml:4: campaigns.a.delay: {WHOLE_DAYS}, got 'true'",
    ),
    (
        "empty delay",
        """\
        campaigns:
          a:
            events: X
            delay:
        """,
        f"c.yaml:4: campaigns.a.delay: {WHOLE_DAYS}, got nothing",
    ),
    (
        "hexadecimal delay",
        """\
        campaigns:
          a:
            events: X
            delay: 0x10
        """,
        f"c.yaml:4: campaigns.a.delay: {WHOLE_DAYS}, got '0x10'",
    ),
    (
        "sexagesimal delay (YAML 1.1 reads 1:30 as 90)",
        """\
        campaigns:
          a:
            events: X
            delay: 1:30
        """,
        f"c.yaml:4: campaigns.a.delay: {WHOLE_DAYS}, got '1:30'",
    ),
    # email_paths
    (
        "email_paths as a string",
        """\
        campaigns:
          a: X
        email_paths: properties.email
        """,
        "c.yaml:3: email_paths: must be a list of strings, got 'properties.email'",
    ),
    (
        "email_paths empty",
        """\
        campaigns:
          a: X
        email_paths: []
        """,
        "c.yaml:3: email_paths: must list at least one entry",
    ),
    (
        "email_paths with an empty entry",
        """\
        campaigns:
          a: X
        email_paths:
          - properties.email
          - ""
        """,
        "c.yaml:5: email_paths[1]: must not be empty",
    ),
    (
        "email_paths with a mapping entry",
        """\
        campaigns:
          a: X
        email_paths: [{path: properties.email}]
        """,
        "c.yaml:3: email_paths[0]: must be a string, got a mapping",
    ),
    # properties
    (
        "properties as a list",
        """\
        campaigns:
          a: X
        properties: [password_hash]
        """,
        "c.yaml:3: properties: must be a mapping, got a list",
    ),
    (
        "exclude as a string",
        """\
        campaigns:
          a: X
        properties:
          exclude: password_hash
        """,
        "c.yaml:4: properties.exclude: must be a list of strings, got 'password_hash'",
    ),
    (
        "types as a list",
        """\
        campaigns:
          a: X
        properties:
          types: [signup_date]
        """,
        "c.yaml:4: properties.types: must map property names to types, got a list",
    ),
    (
        "unknown property type",
        """\
        campaigns:
          a: X
        properties:
          types:
            signup_date: datetime
        """,
        "c.yaml:5: properties.types.signup_date: "
        "must be one of string, date, integer, boolean, collection",
    ),
    (
        "property type left empty",
        """\
        campaigns:
          a: X
        properties:
          types:
            signup_date:
        """,
        "c.yaml:5: properties.types.signup_date: must be a string, got nothing",
    ),
    # api_key
    (
        "api_key as a list",
        """\
        campaigns:
          a: X
        api_key: [a, b]
        """,
        "c.yaml:3: api_key: must be a string, got a list",
    ),
    (
        "api_key left empty",
        """\
        campaigns:
          a: X
        api_key:
        """,
        "c.yaml:3: api_key: must be a string, got nothing",
    ),
    # the document itself
    (
        "a list instead of a mapping",
        """\
        - campaigns
        """,
        "c.yaml:1: the config must be a mapping",
    ),
    (
        "a bare word",
        """\
        # a comment first
        campaigns
        """,
        "c.yaml:2: the config must be a mapping",
    ),
    (
        "empty file",
        "",
        "c.yaml: the config is empty; it needs at least 'campaigns'",
    ),
    (
        "only comments and blank lines",
        """\
        # retently config

        """,
        "c.yaml: the config is empty; it needs at least 'campaigns'",
    ),
    # invalid YAML
    (
        "invalid YAML: bad indentation",
        """\
        campaigns:
          a: X
         b: Y
        """,
        "c.yaml:3: not valid YAML: while parsing a block mapping, expected <block end>, "
        "but found '<block mapping start>'",
    ),
    (
        "invalid YAML: unclosed list",
        """\
        campaigns:
          a: [Order Placed, Dashboard Visited
        email_paths: [properties.email]
        """,
        "c.yaml:3: not valid YAML: while parsing a flow sequence, expected ',' or ']', but got ':'",
    ),
    (
        "invalid YAML: a tab for indentation",
        "campaigns:\n\ta: X\n",
        "c.yaml:2: not valid YAML: while scanning for the next token, "
        "found character '\\t' that cannot start any token",
    ),
    (
        "invalid YAML: two documents",
        """\
        campaigns:
          a: X
        ---
        campaigns:
          b: Y
        """,
        "c.yaml:3: not valid YAML: expected a single document in the stream, "
        "but found another document",
    ),
    (
        "invalid YAML: a control character",
        "campaigns:\n  a: X\n  b: Y\x07\n",
        "c.yaml:3: not valid YAML: unacceptable character #x0007",
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"), [case[1:] for case in ERRORS], ids=[case[0] for case in ERRORS]
)
def test_each_problem_is_refused_with_its_key_path_and_line(text, expected):
    assert problems(text) == [expected]


def test_several_problems_are_reported_together_in_file_order():
    assert problems(
        """\
        campaigns:
          a: "Order Placed,,"
          b:
            events: [X, X]
            delay: soon
        email_path: [properties.email]
        properties:
          types: {signup_date: when}
        """
    ) == [
        "c.yaml:2: campaigns.a: has an empty event name (a stray comma?)",
        "c.yaml:4: campaigns.b.events: lists 'X' twice",
        "c.yaml:5: campaigns.b.delay: must be a whole number of days (0 or more), got 'soon'",
        f"c.yaml:6: email_path: unknown key; did you mean 'email_paths'? {TOP_KEYS}",
        "c.yaml:8: properties.types.signup_date: "
        "must be one of string, date, integer, boolean, collection",
    ]


def test_a_typo_and_the_missing_key_it_hides_are_both_reported():
    assert problems(
        """\
        campaign:
          a: X
        """
    ) == [
        f"c.yaml:1: campaign: unknown key; did you mean 'campaigns'? {TOP_KEYS}",
        "c.yaml:1: campaigns: is required",
    ]


# -- what a valid config means -------------------------------------------------------------------


def test_unquoted_campaign_ids_stay_exactly_as_written():
    config = parse(
        """\
        campaigns:
          5e10: A
          1e3: B
          0x1F: C
          012: D
          123: E
          1_000: F
          true: G
          5e1f9a3c2b7d4e0012ab34cd: H
        """
    )
    assert [c.id for c in config.campaigns] == [
        "5e10",
        "1e3",
        "0x1F",
        "012",
        "123",
        "1_000",
        "true",
        "5e1f9a3c2b7d4e0012ab34cd",
    ]


def test_a_string_is_split_on_commas_and_each_name_trimmed():
    config = parse(
        """\
        campaigns:
          a: "  Order Placed ,Dashboard Visited,   Order  Shipped  "
          b: Signed Up
        """
    )
    assert config.campaigns[0].events == ("Order Placed", "Dashboard Visited", "Order  Shipped")
    assert config.campaigns[1].events == ("Signed Up",)


def test_a_list_keeps_each_name_exactly_commas_and_spaces_included():
    config = parse(
        """\
        campaigns:
          a:
            events: ["Subscription Activate Button Clicked", "Cart, Saved", " Padded "]
          b: ["Order Placed", "order placed"]
        """
    )
    assert config.campaigns[0].events == (
        "Subscription Activate Button Clicked",
        "Cart, Saved",
        " Padded ",
    )
    assert config.campaigns[1].events == ("Order Placed", "order placed")


def test_a_name_under_two_campaigns_maps_to_both_in_file_order():
    config = parse(
        """\
        campaigns:
          nps: "Order Placed, Dashboard Visited"
          csat:
            events: [Support Ticket Closed, Order Placed]
        """
    )
    by_event = config.campaigns_by_event()
    assert {name: [c.id for c in cs] for name, cs in by_event.items()} == {
        "Order Placed": ["nps", "csat"],
        "Dashboard Visited": ["nps"],
        "Support Ticket Closed": ["csat"],
    }


def test_defaults_when_only_campaigns_is_given():
    config = parse(
        """\
        campaigns:
          a: X
        """
    )
    assert config.campaigns == (Campaign("a", ("X",), None, 2),)
    assert config.email_paths == ("properties.email",)
    assert config.exclude == frozenset()
    assert config.types == {}
    assert config.api_key is None
    assert config.path is None


@pytest.mark.parametrize(("written", "days"), [("0", 0), ("3", 3), ("010", 10), ("365", 365)])
def test_delay_is_read_as_whole_days(written, days):
    config = parse(
        f"""\
        campaigns:
          a:
            events: X
            delay: {written}
        """
    )
    assert config.campaigns[0].delay == days


def test_every_key_is_read():
    config = parse(
        """\
        api_key: ${RETENTLY_API_KEY}
        campaigns:
          "5e1f9a": "Order Placed, Dashboard Visited"
          "61ab2c":
            events: ["Subscription Activate Button Clicked"]
            delay: 3
        email_paths: [properties.email, context.traits.email]
        properties:
          exclude: [password_hash, order_id]
          types: {signup_date: date, plan: string, seats: integer, vip: boolean, tags: collection}
        """
    )
    assert config.campaigns == (
        Campaign("5e1f9a", ("Order Placed", "Dashboard Visited"), None, 3),
        Campaign("61ab2c", ("Subscription Activate Button Clicked",), 3, 4),
    )
    assert config.email_paths == ("properties.email", "context.traits.email")
    assert config.exclude == frozenset({"password_hash", "order_id"})
    assert config.types == {
        "signup_date": "date",
        "plan": "string",
        "seats": "integer",
        "vip": "boolean",
        "tags": "collection",
    }
    assert config.api_key.source == "c.yaml:1"
    assert not config.api_key.is_literal


def test_the_documented_example_config_is_valid():
    config = load_config(EXAMPLE)
    assert config.path == EXAMPLE
    assert config.api_key is not None and not config.api_key.is_literal
    assert config.campaigns, "the example maps no campaign"
    for campaign in config.campaigns:
        assert campaign.events


# -- discovery and loading -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("explicit", "environ", "expected"),
    [
        ("given.yaml", {"RETENTLY_CONFIG": "env.yaml"}, "given.yaml"),
        (None, {"RETENTLY_CONFIG": "env.yaml"}, "env.yaml"),
        (None, {}, "retently.yaml"),
        (None, {"RETENTLY_CONFIG": ""}, "retently.yaml"),
    ],
    ids=["--config beats the environment", "$RETENTLY_CONFIG", "default", "empty variable"],
)
def test_find_config_order(explicit, environ, expected):
    assert find_config(explicit, environ) == Path(expected)


def test_find_config_reads_the_process_environment_by_default(monkeypatch):
    monkeypatch.setenv("RETENTLY_CONFIG", "from-env.yaml")
    assert find_config(None) == Path("from-env.yaml")
    monkeypatch.delenv("RETENTLY_CONFIG")
    assert find_config(None) == Path("retently.yaml")


def test_load_config_names_the_file_in_messages(tmp_path):
    path = tmp_path / "retently.yaml"
    path.write_text("campaigns:\n  a:\n    events: X\n    delay: -2\n", encoding="utf-8")
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    assert excinfo.value.problems == [
        f"{path}:4: campaigns.a.delay: must be a whole number of days (0 or more), got '-2'"
    ]


def test_load_config_remembers_its_path_and_accepts_a_byte_order_mark(tmp_path):
    path = tmp_path / "retently.yaml"
    path.write_bytes("\ufeffcampaigns:\n  a: X\n".encode())
    config = load_config(path)
    assert config.path == path
    assert config.campaigns == (Campaign("a", ("X",), None, 2),)


def test_load_config_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    assert excinfo.value.problems == [f"{path}: config file not found"]


def test_load_config_directory(tmp_path):
    with pytest.raises(ConfigError) as excinfo:
        load_config(tmp_path)
    [problem] = excinfo.value.problems
    assert problem.startswith(f"{tmp_path}: cannot read config: ")


def test_load_config_not_utf8(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("campaigns:\n  a: Caf\xe9 Visited\n".encode("latin-1"))
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    [problem] = excinfo.value.problems
    assert problem.startswith(f"{path}: cannot read config: 'utf-8' codec can't decode")


# -- the API key ----------------------------------------------------------------------------------


def api_key(value: str) -> ApiKeySetting:
    """The setting as parsed from a config whose ``api_key`` sits on line 3."""
    config = parse(f"# the key\ncampaigns: {{a: X}}\napi_key: {value}\n")
    assert config.api_key is not None
    return config.api_key


def resolve_problems(setting: ApiKeySetting, environ: dict) -> list[str]:
    with pytest.raises(ConfigError) as excinfo:
        setting.resolve(environ)
    return excinfo.value.problems


def test_a_literal_key_is_used_as_written():
    setting = api_key(SECRET)
    assert setting.is_literal
    assert setting.resolve({}) == SECRET


def test_a_variable_is_expanded_from_the_environment():
    setting = api_key("${RETENTLY_API_KEY}")
    assert not setting.is_literal
    assert setting.resolve({"RETENTLY_API_KEY": "from-env"}) == "from-env"


def test_the_process_environment_is_used_by_default(monkeypatch):
    monkeypatch.setenv("RETENTLY_API_KEY", "from-process")
    assert api_key("${RETENTLY_API_KEY}").resolve() == "from-process"


def test_parsing_never_needs_the_variable():
    """A dry-run loads the config without the key: only ``resolve`` looks at the environment."""
    assert api_key("${SURELY_NOT_SET_ANYWHERE}").source == "c.yaml:3"


def test_an_unset_variable_is_named_with_the_line():
    assert resolve_problems(api_key("${RETENTLY_API_KEY}"), {"OTHER": "x"}) == [
        "c.yaml:3: api_key: environment variable RETENTLY_API_KEY is not set"
    ]


def test_an_empty_variable_is_called_empty():
    assert resolve_problems(api_key("${RETENTLY_API_KEY}"), {"RETENTLY_API_KEY": ""}) == [
        "c.yaml:3: api_key: environment variable RETENTLY_API_KEY is empty"
    ]


def test_several_variables_and_literal_text():
    setting = api_key('"key_${KEY_ID}:${KEY_SECRET}"')
    assert setting.resolve({"KEY_ID": "id1", "KEY_SECRET": "s2"}) == "key_id1:s2"


def test_every_unset_variable_is_named_once():
    setting = api_key('"${KEY_ID}:${KEY_SECRET}:${KEY_ID}"')
    assert resolve_problems(setting, {}) == [
        "c.yaml:3: api_key: environment variable KEY_ID is not set",
        "c.yaml:3: api_key: environment variable KEY_SECRET is not set",
    ]
    assert resolve_problems(setting, {"KEY_ID": "id1"}) == [
        "c.yaml:3: api_key: environment variable KEY_SECRET is not set"
    ]


def test_surrounding_whitespace_of_the_value_is_dropped():
    assert api_key("${K}").resolve({"K": f"{SECRET}\n"}) == SECRET


def test_an_empty_literal_key_is_refused_when_needed():
    assert resolve_problems(api_key('""'), {}) == ["c.yaml:3: api_key: is empty"]


def test_a_lone_dollar_is_not_a_reference():
    assert api_key('"ab$c${"').resolve({}) == "ab$c${"


# -- the key value never shows ---------------------------------------------------------------------


def test_repr_of_the_config_hides_a_literal_key():
    config = parse(f"api_key: {SECRET}\ncampaigns:\n  a: X\n")
    assert config.api_key.resolve({}) == SECRET  # it is there...
    for text in (repr(config), str(config), repr(config.api_key), str(config.api_key)):
        assert SECRET not in text  # ...but never shown
        assert "sk_live" not in text


LEAKY = [
    f"api_key: {SECRET}\napi_key: {SECRET}\ncampaigns: {{a: X}}\n",
    f"apikey: {SECRET}\ncampaigns: {{a: X}}\n",
    f"api_key: [{SECRET}]\ncampaigns: {{a: X}}\n",
    f"api_key: {{key: {SECRET}}}\ncampaigns: {{a: X}}\n",
    f"api_key: {SECRET}\ncampaigns: {{}}\n",
    f"api_key: {SECRET}\ncampaigns:\n  a: X\n b: Y\n",
    f"api_key: [{SECRET}\ncampaigns: {{a: X}}\n",
    f'api_key: "{SECRET}\ncampaigns: {{a: X}}\n',
    f"api_key: {SECRET}\x07\ncampaigns: {{a: X}}\n",
    f"properties:\n  api_key: {SECRET}\ncampaigns: {{a: X}}\n",
    f"campaigns:\n  a:\n    events: X\n    api_key: {SECRET}\n",
    f"api_key: *{SECRET}\ncampaigns: {{a: X}}\n",  # read as a YAML alias, quoted by PyYAML
]


@pytest.mark.parametrize("text", LEAKY, ids=range(len(LEAKY)))
def test_no_error_message_contains_a_literal_key(text):
    for problem in problems(text):
        assert SECRET not in problem
        assert "SECRET" not in problem


def test_no_resolve_error_contains_the_part_of_the_key_that_is_set():
    setting = api_key('"${KEY_ID}:${KEY_SECRET}"')
    [problem] = resolve_problems(setting, {"KEY_ID": SECRET})
    assert SECRET not in problem
    assert problem == "c.yaml:3: api_key: environment variable KEY_SECRET is not set"
