"""Memory that does not grow with the number of distinct names in a log."""

from helpers import EXAMPLE_CONFIG, ndjson, run, track


def test_near_misses_past_the_counted_names_are_summed_up_in_one_line(monkeypatch):
    monkeypatch.setattr("retently_cli.report._NAMES_COUNTED", 2)
    names = ["order completed", "ORDER COMPLETED", "Order Complted", "Order Completed "]
    events = [track(name, f"{name}-{n}") for name in names for n in range(3)]
    result = run("send", "-n", "-c", str(EXAMPLE_CONFIG), "-", input=ndjson(*events))
    assert result.exit_code == 0
    assert "'order completed' ×3: did you mean 'Order Completed'?" in result.stderr
    assert "'ORDER COMPLETED' ×3" in result.stderr
    assert "Order Complted" not in result.stderr
    assert "6 more events under other such names" in result.stderr


def test_the_summary_names_twenty_near_misses_and_counts_the_others(monkeypatch):
    names = [f"Order Completed{n:02d}" for n in range(25)]
    events = [track(name, name) for name in names]
    result = run("send", "-n", "-c", str(EXAMPLE_CONFIG), "-", input=ndjson(*events))
    assert result.stderr.count("did you mean") == 20
    assert "5 more events under other such names" in result.stderr
