"""The Retently HTTP API: one httpx client, the key in a header, nothing else clever.

The key travels only in ``Authorization: api_key=<KEY>`` (never in a URL, where it would leak
into logs) and is never part of anything this module returns or raises.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx

from retently_cli import __version__
from retently_cli.config import check_base_url
from retently_cli.matching import SURVEY_PATH

CAMPAIGNS_PATH = "/api/v2/campaigns"
PING_PATH = "/api/v2/ping"


@dataclass(slots=True)
class Answer:
    """What one HTTP exchange gave: a status and parsed body, or a transport error."""

    status: int | None
    body: object = None
    error: str | None = None  # transport error class name, when there is no status
    sent: bool = False  # the request was written whole, so the server may have acted on it
    retry_after: str | None = None
    latency: float = 0.0


class RetentlyClient:
    def __init__(self, base_url: str, api_key: str, timeout: float = 30.0, transport=None):
        self._http = httpx.Client(
            base_url=check_base_url(base_url),
            headers={
                "Authorization": f"api_key={api_key}",
                "Accept": "application/json",
                "User-Agent": f"retently-cli/{__version__}",
            },
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport,
            follow_redirects=False,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RetentlyClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def post_survey(self, body: dict) -> Answer:
        return self._call("POST", SURVEY_PATH, body)

    def campaigns(self) -> Answer:
        return self._call("GET", CAMPAIGNS_PATH)

    def ping(self) -> Answer:
        return self._call("GET", PING_PATH)

    def _call(self, method: str, path: str, body: dict | None = None) -> Answer:
        started = time.monotonic()
        try:
            response = self._http.request(method, path, json=body)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            return Answer(None, error=_name(exc), latency=time.monotonic() - started)
        except httpx.LocalProtocolError as exc:  # refused here, before anything was sent
            return Answer(None, error=_name(exc), latency=time.monotonic() - started)
        except httpx.TransportError as exc:
            # Read errors, read timeouts and dropped connections come after the request was
            # written, so the server may have processed it.
            written = not isinstance(exc, (httpx.WriteError, httpx.WriteTimeout))
            return Answer(None, error=_name(exc), sent=written, latency=time.monotonic() - started)
        try:
            parsed = response.json()
        except ValueError:
            parsed = None
        return Answer(
            response.status_code,
            parsed,
            sent=True,
            retry_after=response.headers.get("Retry-After"),
            latency=time.monotonic() - started,
        )


def _name(exc: Exception) -> str:
    return type(exc).__name__
