import gzip
from pathlib import Path

import orjson
import pytest

from retently_cli.fake_server import FakeRetently

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = ROOT / "config.example.yaml"

NPS = "5e1f9a3c2b7d4e0012ab34cd"
CSAT = "61ab2c9d8e7f6a0011bc45de"
CES = "63cd4e5f6a7b8c0022de56ef"
TEST_KEY = "test-key-0123456789"


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


def track(event="Order Completed", message_id="m1", email="ann@example.com", **properties):
    props = {"email": email, **properties} if email is not None else dict(properties)
    return {"type": "track", "event": event, "messageId": message_id, "properties": props}


def ndjson(*messages) -> bytes:
    return b"".join(orjson.dumps(m) + b"\n" for m in messages)


def write_gz(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as f:
        f.write(data)
    return path


def records(stdout: str | bytes) -> list[dict]:
    if isinstance(stdout, str):
        stdout = stdout.encode()
    return [orjson.loads(line) for line in stdout.splitlines() if line.strip()]
