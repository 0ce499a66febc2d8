"""Tags at scale: parsing is one pass, so a huge tags value is handled whole and exactly.

The time itself is measured by benchmarks/bench_tags.py (linear: x2 per doubling), not here.
"""

from helpers import EXAMPLE_CONFIG, ndjson, records, run, track

from retently_cli.subscriber import parse_tags

MANY = 200_000  # the quadratic parser needed about 10 minutes for this many


def test_many_distinct_tags_are_kept_whole_and_in_order():
    names = [f"tag-{i}" for i in range(MANY)]
    assert parse_tags(", ".join(names)) == names
    assert parse_tags(names) == names


def test_repeated_tags_are_sent_once_where_first_seen():
    text = ", ".join(f"tag-{i % 1000}" for i in range(MANY)) + ", ,new"
    assert parse_tags(text) == [f"tag-{i}" for i in range(1000)] + ["new"]
    assert parse_tags(["b", "a", " b ", 1, 1.0, "1"]) == ["b", "a", "1"]


def test_a_dry_run_with_a_huge_tags_line_shows_every_tag_once():
    tags = ",".join(f"t{i}" for i in range(MANY)) + ",t0,t1"
    result = run(
        "send",
        "-n",
        "-o",
        "ndjson",
        "--no-ledger",
        "-c",
        str(EXAMPLE_CONFIG),
        "-",
        input=ndjson(track(tags=tags)),
    )
    assert result.exit_code == 0, result.stderr
    sent = [r for r in records(result.stdout) if r["outcome"] == "dry_run"]
    assert sent
    for record in sent:
        (subscriber,) = record["request"]["body"]["subscribers"]
        assert subscriber["tags"] == [f"t{i}" for i in range(MANY)]
