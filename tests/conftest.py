"""Fixtures only; what tests share otherwise lives in helpers.py."""

import pytest

# Re-exported for test files that still write `from conftest import ...`; new code imports helpers.
from helpers import (  # noqa: F401
    CES,
    CSAT,
    EXAMPLE_CONFIG,
    NPS,
    ROOT,
    TEST_KEY,
    ndjson,
    records,
    track,
    write_gz,
)

from retently_cli.fake_server import FakeRetently


@pytest.fixture(autouse=True)
def _no_terminal_surprises(monkeypatch, tmp_path):
    """Tests see the tool as a pipe would: no colour, a wide fixed width, no key in the env."""
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("RETENTLY_API_KEY", raising=False)
    monkeypatch.delenv("RETENTLY_CONFIG", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    # A test that forgets to point the tool at the fake server is refused on this machine
    # instead of reaching the real Retently (port 9, discard, has nothing listening).
    monkeypatch.setenv("RETENTLY_BASE_URL", "http://127.0.0.1:9")
    # Each test gets its own data directory, so the default ledger is fresh and private.
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.delenv("RETENTLY_LEDGER", raising=False)


@pytest.fixture
def fake():
    """A fake Retently on 127.0.0.1 that knows the example config's campaigns."""
    with FakeRetently(api_key=TEST_KEY) as server:
        yield server


@pytest.fixture
def fake_env(fake, monkeypatch):
    """The fake server, with the tool pointed at it and the key in the environment."""
    monkeypatch.setenv("RETENTLY_BASE_URL", fake.url)
    monkeypatch.setenv("RETENTLY_API_KEY", TEST_KEY)
    return fake
