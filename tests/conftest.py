import gzip
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = ROOT / "config.example.yaml"

NPS = "5e1f9a3c2b7d4e0012ab34cd"
CSAT = "61ab2c9d8e7f6a0011bc45de"
CES = "63cd4e5f6a7b8c0022de56ef"


@pytest.fixture(autouse=True)
def _no_terminal_surprises(monkeypatch):
    """Tests see the tool as a pipe would: no colour, a wide fixed width, no key in the env."""
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("RETENTLY_API_KEY", raising=False)
    monkeypatch.delenv("RETENTLY_CONFIG", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)


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
