"""-v and -vv as levels of the ``retently`` logger: what they show, where, and never the key."""

import logging

import pytest
from helpers import NPS, TEST_KEY, delivery_config, numbered_events, records, run

from retently_cli.fake_server import FakeRetently

SECRET = "SECRET-key-that-must-never-show-42"
CAMPAIGNS = [
    {"id": NPS, "name": "nps", "isActive": True, "type": "transactional", "channel": "email"}
]


class Kept(logging.Handler):
    """Every record it is given, formatted as a log file would have it (traceback included)."""

    def __init__(self):
        super().__init__(logging.NOTSET)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)
        self.lines.append(self.format(record))


@pytest.fixture
def kept():
    """Records as a handler on the ``retently`` logger sees them, and as one on the root sees
    them at DEBUG (the libraries' own loggers too: httpx, httpcore)."""
    ours, everything, root = Kept(), Kept(), logging.getLogger()
    level = root.level
    logging.getLogger("retently").addHandler(ours)
    root.addHandler(everything)
    root.setLevel(logging.DEBUG)
    yield ours, everything
    root.setLevel(level)
    root.removeHandler(everything)
    logging.getLogger("retently").removeHandler(ours)


@pytest.mark.parametrize("server", ["accepting", "refusing", "unreachable"])
@pytest.mark.parametrize("command", ["send", "check", "campaigns"])
def test_at_vv_the_key_is_in_no_output_file_or_log_record(
    command, server, kept, tmp_path, monkeypatch
):
    config = delivery_config(tmp_path)
    monkeypatch.setenv("RETENTLY_API_KEY", SECRET)
    report, failed, ledger = tmp_path / "report.ndjson", tmp_path / "failed.ndjson", tmp_path / "l"
    args = {
        "send": ["send", "-o", "ndjson", "--report", report, "--failed", failed, "--ledger", ledger,
                 numbered_events(tmp_path, 3)],
        "check": ["check", "--online"],
        "campaigns": ["campaigns"],
    }[command]  # fmt: skip
    with FakeRetently(
        api_key=SECRET if server == "accepting" else TEST_KEY, campaigns=CAMPAIGNS
    ) as fake:
        if server != "unreachable":
            monkeypatch.setenv("RETENTLY_BASE_URL", fake.url)
        result = run(*args, "-vv", "-c", config)
    ours, everything = kept
    expected = {"accepting": 0, "refusing": 3}.get(server, 1)
    assert result.exit_code == expected, result.stderr
    said = {"refusing": "Retently refused the API key", "unreachable": "cannot reach http://"}
    assert said.get(server, "") in result.stderr  # the error itself is shown, without the key
    assert "API key from $RETENTLY_API_KEY" in result.stderr
    assert any(line.startswith("retently.cli.options INFO API key from") for line in ours.lines)
    if command == "send":
        assert records(result.stdout)  # stdout carries records, and nothing else
        assert any("DEBUG POST /api/v2/survey" in line for line in ours.lines)
        assert "  request: " in result.stderr
        assert report.read_text() and (server == "accepting" or failed.read_text())
    outputs = [result.stdout, result.stderr, *ours.lines, *everything.lines]
    outputs += [path.read_text() for path in (report, failed) if path.exists()]
    assert all(SECRET not in text for text in outputs)
    assert all(SECRET not in repr(record.args) for record in everything.records)


def test_v_shows_each_request_and_vv_also_its_bodies(fake_env, tmp_path):
    config, events = delivery_config(tmp_path), numbered_events(tmp_path, 2)
    once = run("send", "-v", "-c", config, "--no-ledger", events)
    twice = run("send", "-vv", "-c", config, "--no-ledger", events)
    assert once.exit_code == twice.exit_code == 0, once.stderr + twice.stderr
    for result in (once, twice):
        assert result.stderr.count("POST /api/v2/survey 200 ") == 2
    assert "  request: " not in once.stderr and "  response: " not in once.stderr
    assert twice.stderr.count('  request: {"campaign": ') == 2
    assert twice.stderr.count('  response: {"message": "OK"') == 2


def test_without_v_nothing_is_logged(fake_env, tmp_path, caplog):
    result = run(
        "send", "-c", delivery_config(tmp_path), "--no-ledger", numbered_events(tmp_path, 1)
    )
    assert result.exit_code == 0, result.stderr
    assert "POST " not in result.stderr and "config: " not in result.stderr
    assert not [r for r in caplog.records if r.name.startswith("retently")]


def test_caplog_sees_the_records_of_a_command(tmp_path, caplog):
    config = delivery_config(tmp_path)
    result = run("check", "-v", "-c", config)
    assert result.exit_code == 0, result.stderr
    assert f"config: {config} (--config)" in caplog.messages
    assert {r.name for r in caplog.records} >= {"retently.cli.options"}


def test_a_command_leaves_the_logger_as_it_found_it(tmp_path):
    config = delivery_config(tmp_path)
    logger = logging.getLogger("retently")
    before = (list(logger.handlers), logger.level, logger.propagate)
    for verbosity in (["-vv"], [], ["-v"]):
        result = run("check", *verbosity, "-c", config)
        assert (list(logger.handlers), logger.level, logger.propagate) == before
        assert ("config: " in result.stderr) == bool(verbosity)


@pytest.mark.parametrize("color", ["always", "never"])
def test_log_lines_are_coloured_as_color_says(tmp_path, color):
    result = run("check", "-v", "--color", color, "-c", delivery_config(tmp_path))
    line = next(line for line in result.stderr.splitlines() if "config: " in line)
    assert ("\x1b[" in line) == (color == "always")


def test_vv_shows_where_an_internal_error_happened(tmp_path, monkeypatch):
    from retently_cli import run as running

    def broken(self, *args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(running.SendJob, "read", broken)
    config, events = delivery_config(tmp_path), numbered_events(tmp_path, 1)
    once = run("send", "-n", "-v", "-c", config, events)
    twice = run("send", "-n", "-vv", "-c", config, events)
    stopped = "retently: internal error (RuntimeError: a bug); the run stopped (-vv shows where)"
    for result in (once, twice):
        assert isinstance(result.exception, SystemExit) and result.exit_code == 1
        assert stopped in result.stderr.splitlines()
    assert "Traceback" not in once.stderr
    assert "Traceback" in twice.stderr and "in broken" in twice.stderr


@pytest.mark.parametrize("command", ["send", "diff", "coverage", "check", "campaigns"])
def test_the_help_says_what_v_and_vv_show(command):
    text = " ".join(run(command, "--help").stdout.split())
    assert "-v: config, inputs, ledger and each request" in text
    assert "-vv: also each input as read and the request and response bodies" in text
