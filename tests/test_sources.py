"""Which files a run reads: --include/--exclude, hidden files, the run's own outputs, and day
folders pruned by --since/--until, through `retently send` on real folders."""

import gzip
from datetime import UTC, datetime, timedelta

from helpers import EXAMPLE_CONFIG, ndjson, records, run, track

from retently_cli.readers import expand_paths
from retently_cli.sources import Selection
from retently_cli.sources import expand_paths as listing

DAY = timedelta(days=1)
START = datetime(2025, 11, 1, tzinfo=UTC)


def send(*args):
    return run("send", "-n", "-o", "ndjson", "-c", str(EXAMPLE_CONFIG), *args)


def sources_of(result) -> set[str]:
    return {r["source"] for r in records(result.stdout)}


def test_include_and_exclude_choose_files_by_their_path_below_the_folder(tmp_path):
    for rel in ("a.ndjson", "logs/b.ndjson", "logs/old/c.ndjson", "notes/d.json"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(ndjson(track(message_id=rel)))
    result = send("--include", "logs/*", "--exclude", "*/old/*", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert sources_of(result) == {str(tmp_path / "logs/b.ndjson")}
    result = send("--include", "*.json", "--include", "a.*", str(tmp_path))
    assert sources_of(result) == {str(tmp_path / "a.ndjson"), str(tmp_path / "notes/d.json")}


def test_a_file_named_on_its_own_is_read_whatever_the_globs(tmp_path):
    (tmp_path / "x.ndjson").write_bytes(ndjson(track()))
    result = send("--exclude", "*", str(tmp_path / "x.ndjson"))
    assert sources_of(result) == {str(tmp_path / "x.ndjson")}


def test_hidden_files_and_folders_are_left_out_of_a_walk(tmp_path):
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "x.ndjson").write_bytes(ndjson(track()))
    (tmp_path / ".hidden.ndjson").write_bytes(ndjson(track()))
    (tmp_path / "seen.ndjson").write_bytes(ndjson(track()))
    assert [s.name for s in expand_paths([str(tmp_path)], None)] == [str(tmp_path / "seen.ndjson")]


def test_the_runs_own_report_inside_the_walked_folder_is_not_read_back(tmp_path):
    (tmp_path / "a.ndjson").write_bytes(ndjson(track(message_id="a")))
    (tmp_path / "z.ndjson").write_bytes(ndjson(track(message_id="z")))
    report = tmp_path / "m-report.ndjson"  # between the two inputs in name order
    result = send("--report", str(report), str(tmp_path))
    assert result.exit_code == 0, result.output
    assert sources_of(result) == {str(tmp_path / "a.ndjson"), str(tmp_path / "z.ndjson")}
    assert "holds records written by retently" not in result.stderr


def test_an_existing_file_in_the_walk_is_still_never_overwritten_by_the_report(tmp_path):
    log = tmp_path / "events.ndjson"
    log.write_bytes(ndjson(track()))
    result = send("--report", str(log), str(tmp_path))
    assert result.exit_code == 2 and "it is also an input" in result.stderr
    assert log.read_bytes() == ndjson(track())
    # ... unless the walk would not read it anyway
    result = send("--exclude", "events.*", "--report", str(log), str(tmp_path))
    assert result.exit_code == 0, result.output


def export(root, days, per_day=1):
    """A Segment S3-destination layout: one folder per received day, events of that day."""
    for n in range(days):
        day = START + n * DAY
        folder = root / "segment-logs" / "src1" / str(round(day.timestamp() * 1000))
        folder.mkdir(parents=True)
        lines = [
            {
                **track(message_id=f"{n}-{i}"),
                "timestamp": (day + timedelta(hours=1 + i)).isoformat(),
            }
            for i in range(per_day)
        ]
        (folder / "part.gz").write_bytes(gzip.compress(ndjson(*lines)))


def test_since_until_leave_day_folders_out_of_reach_unopened(tmp_path):
    export(tmp_path, 30)
    since, until = START + 10 * DAY, START + 12 * DAY
    result = send(
        "--since", since.isoformat(), "--until", until.isoformat(), "--max-lateness", "3",
        "-o", "table", str(tmp_path),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    # opened: days 9 (skew) to 14 (until + 3 days, exclusive) = 6 folders of 30
    assert "lines read from 6 sources" in result.stderr
    assert "24 day folders pruned" in result.stderr
    full = send(str(tmp_path))
    wanted = send("--since", since.isoformat(), "--until", until.isoformat(), str(tmp_path))

    def dry(result):
        return {r["message_id"] for r in records(result.stdout) if r["outcome"] == "dry_run"}

    assert dry(wanted) == {m for m in dry(full) if m.split("-")[0] in ("10", "11")}


def test_pruning_needs_a_window_and_spares_folders_that_are_not_days(tmp_path):
    export(tmp_path, 5)
    other = tmp_path / "segment-logs" / "src1" / "1699999999999"  # not a midnight
    other.mkdir()
    (other / "x.ndjson").write_bytes(ndjson(track(message_id="odd")))
    selection = Selection(window=None)
    assert len(list(listing([str(tmp_path)], None, selection=selection))) == 6
    assert selection.pruned_folders == 0
    result = send("--since", (START + 4 * DAY).isoformat(), "-o", "table", str(tmp_path))
    assert "lines read from 3 sources" in result.stderr  # days 3, 4 and the odd folder
    assert "3 day folders pruned" in result.stderr


def test_a_named_day_folder_is_read_whatever_the_window(tmp_path):
    export(tmp_path, 3)
    day0 = next((tmp_path / "segment-logs" / "src1").iterdir())
    result = send("--since", "2030-01-01", "-o", "table", str(sorted([day0])[0]))
    assert "lines read from 1 source" in result.stderr
    assert "pruned" not in result.stderr
