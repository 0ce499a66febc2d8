"""coverage and diff say what Retently would receive as customer fields (issue 12)."""

import helpers
import orjson
from helpers import NPS, ndjson, records, track

CONFIG = f'campaigns:\n  "{NPS}": "Order Completed"\n'
TYPED = CONFIG + "properties:\n  types:\n    signup_date: date\n"

EVENTS = ndjson(
    track(message_id="1", email="a@example.com", revenue=40, plan="pro", signup_date="01/30/2020",
          note=""),
    track(message_id="2", email="b@example.com", revenue=42.5, plan=3, signup_date="02/11/2021"),
    track(message_id="3", email="c@example.com", revenue="41", plan=True, note="  "),
    track(message_id="4", email=None, secret="not sent: no email"),
    track(message_id="1", email="a@example.com", revenue="dup"),  # a duplicate: not sent
)  # fmt: skip


def run(*args, input=EVENTS):
    return helpers.run(*args, input=input)


def config(tmp_path, text=CONFIG, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_coverage_json_lists_each_property_with_its_type_conflicts_empties_and_fix(tmp_path):
    result = run("coverage", "-c", config(tmp_path), "-o", "json", "-")
    assert result.exit_code == 0, result.stderr
    rows = {row["name"]: row for row in orjson.loads(result.stdout)["properties"]}
    assert set(rows) == {"revenue", "plan", "signup_date", "note"}
    assert rows["revenue"] == {
        "name": "revenue",
        "count": 2,
        "type": "integer",
        "forced": False,
        "conflicts": {"string": 2},
        "left_out": 1,
        "empty": 0,
        "other_date_format": 0,
        "fix": "properties.types: {revenue: string}",
    }
    assert rows["plan"]["type"] == "string" and rows["plan"]["count"] == 3
    assert rows["plan"]["conflicts"] == {"integer": 1, "boolean": 1}
    assert rows["plan"]["fix"] == "properties.types: {plan: string}"
    assert rows["signup_date"]["type"] == "string"
    assert rows["signup_date"]["other_date_format"] == 2
    assert rows["signup_date"]["fix"] == "properties.types: {signup_date: date}"
    assert rows["note"]["count"] == 0 and rows["note"]["empty"] == 2
    assert rows["note"]["type"] is None and rows["note"]["fix"] is None


def test_coverage_counts_what_a_dry_run_sends(tmp_path):
    """The same typing as a send: the counts are the dry-run's properties, no more."""
    path = config(tmp_path)
    dry = run("send", "-n", "-o", "ndjson", "-c", path, "-")
    sent: dict = {}
    for record in records(dry.stdout):
        if record["outcome"] == "dry_run":
            for prop in record["request"]["body"]["subscribers"][0].get("properties", []):
                sent.setdefault(prop["label"], set()).add(prop["type"])
                sent[prop["label"] + "#"] = sent.get(prop["label"] + "#", 0) + 1
    rows = orjson.loads(run("coverage", "-c", path, "-o", "json", "-").stdout)["properties"]
    for row in rows:
        if row["count"]:
            assert sent[row["name"]] == {row["type"]}
            assert sent[row["name"] + "#"] == row["count"]


def test_a_forced_date_needs_no_fix(tmp_path):
    result = run("coverage", "-c", config(tmp_path, TYPED), "-o", "json", "-")
    rows = {row["name"]: row for row in orjson.loads(result.stdout)["properties"]}
    assert rows["signup_date"]["type"] == "date" and rows["signup_date"]["forced"] is True
    assert rows["signup_date"]["count"] == 2
    assert rows["signup_date"]["other_date_format"] == 0 and rows["signup_date"]["fix"] is None


def test_coverage_table_shows_the_properties_and_the_lines_that_fix_them(tmp_path):
    result = run("coverage", "-c", config(tmp_path), "-")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "properties sent" in out
    assert "also seen as string 2; 1 left out (not integer)" in out
    assert "2 dates like MM/DD/YYYY, not read as dates" in out
    assert "2 empty, left out" in out
    for line in ("{revenue: string}", "{plan: string}", "{signup_date: date}"):
        assert f"  properties.types: {line}" in out


# -- diff: which customer fields change --------------------------------------------------------


def test_diff_names_the_customer_fields_that_change(tmp_path):
    old, new = config(tmp_path, CONFIG, "old.yaml"), config(tmp_path, TYPED, "new.yaml")
    result = run("diff", old, new, "-")
    assert result.exit_code == 1, result.output
    assert "'Order Completed' changes what it sends" in result.stdout
    assert "signup_date: string -> date in 2 surveys" in result.stdout


def test_diff_ndjson_lists_the_fields_each_change_touches(tmp_path):
    excluded = CONFIG + "properties:\n  exclude: [plan]\n  types:\n    revenue: string\n"
    old, new = config(tmp_path, CONFIG, "old.yaml"), config(tmp_path, excluded, "new.yaml")
    result = run("diff", "-o", "ndjson", old, new, "-")
    got = {r["message_id"]: r["fields"] for r in records(result.stdout)}
    assert got == {
        "1": ["plan: left out", "revenue: integer -> string"],
        "2": ["plan: left out", "revenue: now sent (string)"],
        "3": ["plan: left out", "revenue: integer -> string"],
    }
    assert "plan: left out in 3 surveys" in result.stderr
    assert "revenue: integer -> string in 2 surveys" in result.stderr
