"""Day-folder pruning for --since/--until: which folders of a Segment export can be left
unopened, at the boundaries."""

from datetime import UTC, datetime, timedelta

import pytest

from retently_cli.pruning import DAY_MS, Window, day_folder_start, prunable

SINCE = datetime(2025, 11, 10, tzinfo=UTC)
UNTIL = datetime(2025, 11, 17, tzinfo=UTC)


def folder(when: datetime) -> str:
    return str(round(when.timestamp() * 1000))


def test_a_day_folder_is_a_13_digit_epoch_ms_at_a_utc_midnight():
    assert day_folder_start(folder(SINCE)) == round(SINCE.timestamp() * 1000)
    assert day_folder_start(str(round(SINCE.timestamp() * 1000) + 3_600_000)) is None  # 01:00
    assert day_folder_start("2025-11-10") is None
    assert day_folder_start("0" + folder(SINCE)) is None  # 14 digits
    assert day_folder_start("０" * 13) is None  # other scripts' digits are not digits here


def test_folders_that_end_a_day_or_more_before_since_are_pruned():
    window = Window(since=SINCE)
    # The folder of since-2d ends exactly at since-1d: no event of the window is in it.
    assert prunable(folder(SINCE - timedelta(days=2)), window)
    assert prunable(folder(SINCE - timedelta(days=30)), window)
    # The folder of since-1d ends at since: an event a few hours ahead of the clock fits.
    assert not prunable(folder(SINCE - timedelta(days=1)), window)
    assert not prunable(folder(SINCE), window)
    assert not prunable(folder(SINCE + timedelta(days=400)), window)  # no --until: no end


def test_a_since_inside_a_day_keeps_the_folders_it_may_reach():
    window = Window(since=SINCE + timedelta(hours=6))
    assert not prunable(folder(SINCE - timedelta(days=1)), window)  # ends 6 h after since-1d
    assert prunable(folder(SINCE - timedelta(days=2)), window)


def test_folders_from_until_plus_the_lateness_on_are_pruned():
    window = Window(until=UNTIL, max_lateness_days=7)
    assert prunable(folder(UNTIL + timedelta(days=7)), window)
    assert prunable(folder(UNTIL + timedelta(days=300)), window)
    assert not prunable(folder(UNTIL + timedelta(days=6)), window)
    assert not prunable(folder(UNTIL - timedelta(days=900)), window)  # no --since: no start


def test_the_lateness_allowance_is_the_users_to_set():
    assert prunable(folder(UNTIL), Window(until=UNTIL, max_lateness_days=0))
    assert not prunable(folder(UNTIL - timedelta(days=1)), Window(until=UNTIL, max_lateness_days=0))
    half = Window(until=UNTIL, max_lateness_days=1.5)
    assert not prunable(folder(UNTIL + timedelta(days=1)), half)  # starts at until+1d < +1.5d
    assert prunable(folder(UNTIL + timedelta(days=2)), half)


@pytest.mark.parametrize(
    "name",
    ["segment-logs", "src-1", "1762732800001", "176273280000", "x1762732800000", "latest", ""],
)
def test_folders_that_are_not_day_folders_are_never_pruned(name):
    assert not prunable(name, Window(since=SINCE, until=UNTIL, max_lateness_days=0))


def test_without_a_window_nothing_is_pruned():
    old = folder(SINCE - timedelta(days=3000))
    assert not prunable(old, None)
    assert not prunable(old, Window())
    assert DAY_MS == 24 * 3600 * 1000
