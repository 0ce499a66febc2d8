"""The Retently HTTP API: one httpx client, the key in a header, nothing else clever.

The key travels only in ``Authorization: api_key=<KEY>`` (never in a URL, where it would leak
into logs) and is never part of anything this module returns or raises.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from retently_cli import __version__
from retently_cli.config import DELIVERY_DEFAULTS, check_base_url

if TYPE_CHECKING:
    from retently_cli.matching import Decision

CAMPAIGNS_PATH = "/api/v2/campaigns"
PING_PATH = "/api/v2/ping"
SURVEY_PATH = "/api/v2/survey"  # where survey_body goes


def survey_body(decision: Decision) -> dict:
    """The JSON body of ``POST /api/v2/survey`` for one decision's subscriber."""
    campaign = decision.campaign
    assert campaign is not None  # only a decision a campaign matched is surveyed
    body: dict[str, object] = {"campaign": campaign.id, "subscribers": [decision.subscriber]}
    if campaign.delay is not None:
        body["delay"] = campaign.delay
    return body


@dataclass(slots=True)
class Answer:
    """What one HTTP exchange gave: a status and parsed body, or a transport error."""

    status: int | None
    body: object = None
    error: str | None = None  # transport error class name, when there is no status
    problem: str | None = None  # the same in words, with the address and what to check
    sent: bool = False  # the request was written whole, so the server may have acted on it
    retry_after: str | None = None
    latency: float = 0.0

    def describe(self, message: bool = True) -> str:
        """The answer in words, the same in reports, errors and the trace: the status with
        the API's message (unless ``message`` is false), or what went wrong on the way."""
        if self.status is None:
            return self.problem or str(self.error)
        said = self.body.get("message") if message and isinstance(self.body, dict) else None
        return f"HTTP {self.status}" + (f": {said}" if said else "")


class RetentlyClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        timeout: float = DELIVERY_DEFAULTS.timeout,
        transport=None,
    ):
        import httpx  # here, not at the top: a dry-run never needs it, and it costs 30 ms

        self.base_url = check_base_url(base_url)
        self._http = httpx.Client(
            base_url=self.base_url,
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
        import httpx

        started = time.monotonic()
        try:
            response = self._http.request(method, path, json=body)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            return self._failed(exc, started)
        except httpx.LocalProtocolError as exc:  # refused here, before anything was sent
            return self._failed(exc, started)
        except httpx.TransportError as exc:
            # Read errors, read timeouts and dropped connections come after the request was
            # written, so the server may have processed it.
            written = not isinstance(exc, (httpx.WriteError, httpx.WriteTimeout))
            return self._failed(exc, started, written)
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

    def _failed(self, exc: Exception, started: float, sent: bool = False) -> Answer:
        return Answer(
            None,
            error=type(exc).__name__,
            problem=transport_problem(exc, self.base_url),
            sent=sent,
            latency=time.monotonic() - started,
        )


_HINT = "check base_url or your network"


def transport_problem(exc: Exception, base_url: str) -> str:
    """A transport error as a person can act on it: the address, what happened, what to
    check; never a bare exception class."""
    import httpx

    if isinstance(exc, httpx.ConnectTimeout):
        return f"cannot reach {base_url}: no connection within the timeout; {_HINT}"
    if isinstance(exc, httpx.PoolTimeout):
        return f"cannot reach {base_url}: no free connection within the timeout"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot reach {base_url}: {_connect_failure(exc)}; {_HINT}"
    if isinstance(exc, httpx.ReadTimeout):
        return f"{base_url} did not answer within the timeout"
    if isinstance(exc, httpx.WriteTimeout):
        return f"{base_url} did not take the request within the timeout"
    if isinstance(exc, httpx.LocalProtocolError):
        return f"the request to {base_url} could not be written ({exc})"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"{base_url} closed the connection without a full answer"
    return f"the connection to {base_url} broke ({_connect_failure(exc)})"


def _connect_failure(exc: Exception) -> str:
    text = str(exc).lower()
    for clue, words in (
        ("refused", "connection refused"),
        ("name or service not known", "no such host"),
        ("nodename nor servname", "no such host"),
        ("temporary failure in name resolution", "the host name cannot be resolved now"),
        ("certificate", "its TLS certificate is not trusted"),
        ("network is unreachable", "the network is unreachable"),
        ("reset", "connection reset"),
    ):
        if clue in text:
            return words
    return re.sub(r"^\[errno -?\d+\]\s*", "", str(exc), flags=re.I) or type(exc).__name__
