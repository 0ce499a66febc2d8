"""A fake Retently API server on 127.0.0.1, for tests and for trying a send locally.

Behaves like the contract in retently-api.md: `Authorization: api_key=<KEY>` auth, the
`{"message", "code", "data"}` envelope, /ping, /campaigns and /survey, a sliding-window rate
limit, and scriptable faults (error statuses, slow answers, dropped connections).

    with FakeRetently(api_key="k") as srv:
        httpx.post(srv.url + "/api/v2/survey", ...)
        assert srv.survey_count(email="a@b.co") == 1
"""

from __future__ import annotations

import argparse
import copy
import hmac
import json
import math
import os
import random
import signal
import socket
import sys
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from retently_cli.vocabulary import EnvVar

HOST = "127.0.0.1"
BAD_KEY_MESSAGE = "Please check your API Key to make sure it's valid."
PROPERTY_TYPES = frozenset({"string", "date", "integer", "boolean", "collection"})
STATUS_FAULTS = {
    "500": "Internal Server Error",
    "501": "Not Implemented",
    "502": "Bad Gateway",
    "503": "Service Unavailable",
    "408": "Request Timeout",
    "429": "Too many requests",
    "401": BAD_KEY_MESSAGE,
}
# Answers to /survey the API documents nothing against: a 2xx whose envelope says it failed
# (nothing recorded), a 2xx with no body, and a 2xx with no per-email results (both recorded).
ANSWER_SHAPES = frozenset({"envelope_error", "envelope_401", "empty_body", "no_results"})
ENVELOPE_ERRORS = {
    "envelope_error": (422, "The given data was invalid."),
    "envelope_401": (401, BAD_KEY_MESSAGE),
}
FAULTS = frozenset(STATUS_FAULTS) | {"slow", "drop_before", "drop_after"} | ANSWER_SHAPES
DEFAULT_FAULT_CHOICES = ("500", "502", "503", "429", "drop_before", "drop_after", "slow")
REDACTED_HEADERS = frozenset({"authorization", "x-api-key"})


def _campaign(id_, name, metric, template, active=True, type_="transactional", channel="email"):
    return {
        "id": id_,
        "name": name,
        "isActive": active,
        "templateId": template,
        "metric": metric,
        "type": type_,
        "channel": channel,
    }


DEFAULT_CAMPAIGNS = (
    _campaign("5e1f9a3c2b7d4e0012ab34cd", "Post-purchase NPS", "NPS", "5e1f9a3c2b7d4e0012ab0001"),
    _campaign("61ab2c9d8e7f6a0011bc45de", "Support CSAT", "CSAT", "61ab2c9d8e7f6a0011bc0002"),
    _campaign("63cd4e5f6a7b8c0022de56ef", "Onboarding effort", "CES", "63cd4e5f6a7b8c0022de0003"),
    _campaign(
        "6a0000000000000000000001",
        "Quarterly NPS newsletter",
        "NPS",
        "6a0000000000000000000004",
        active=False,
        type_="regular",
    ),
)


def envelope(code: int, message: str, data=None, **extra) -> dict:
    return {"message": message, "code": code, "data": data, **extra}


def plausible_email(email) -> bool:
    """One @, non-empty local part, a dot inside the domain, no whitespace."""
    if not isinstance(email, str) or email.count("@") != 1 or any(c.isspace() for c in email):
        return False
    local, domain = email.split("@")
    return (
        bool(local)
        and "." in domain.strip(".")
        and not domain.startswith(".")
        and not domain.endswith(".")
    )


def subscriber_problem(sub) -> str | None:
    """Why a subscriber object would be refused, or None if it is acceptable."""
    if not isinstance(sub, dict):
        return "subscriber must be a JSON object"
    email = sub.get("email")
    if email is None or email == "":
        return "email is required"
    if not plausible_email(email):
        return f"invalid email: {email!r}"
    tags = sub.get("tags")
    if tags is not None and not (isinstance(tags, list) and all(isinstance(t, str) for t in tags)):
        return "tags must be a list of strings"
    props = sub.get("properties")
    if props is None:
        return None
    if not isinstance(props, list):
        return "properties must be a list"
    for prop in props:
        if (
            not isinstance(prop, dict)
            or not isinstance(prop.get("label"), str)
            or not prop["label"]
        ):
            return "each property needs a non-empty label"
        if "type" in prop and prop["type"] not in PROPERTY_TYPES:
            return (
                f"property {prop['label']!r} has invalid type {prop['type']!r} "
                f"(expected one of {', '.join(sorted(PROPERTY_TYPES))})"
            )
    return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() must not wait for sleeping or idle keep-alive handlers

    def __init__(self, fake: FakeRetently, port: int):
        self.fake = fake
        self.connections: set[socket.socket] = set()
        self.conn_lock = threading.Lock()
        super().__init__((HOST, port), _Handler)

    def process_request(self, request, client_address):
        with self.conn_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self.conn_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address):
        if self.fake.verbose:  # client hang-ups are expected (drops, timeouts): stay quiet
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeRetently/1.0"
    server: _Server

    def setup(self):
        super().setup()  # headers and body go out in two writes: avoid Nagle's 40 ms stall
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format, *args):  # noqa: A002 - the default logs the raw query (key!)
        pass

    def do_GET(self):
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _handle(self):
        fake, started = self.server.fake, time.monotonic()
        path = urlsplit(self.path).path
        headers = {
            k: ("REDACTED" if k.lower() in REDACTED_HEADERS else v) for k, v in self.headers.items()
        }
        body = self._read_body()
        fault = fake._next_fault(path)
        if fault == "drop_before":
            fake._log_request(self.command, path, None, started, headers, fault)
            return self._drop()
        if fault == "slow" and fake._stopping.wait(fake.slow_seconds):
            return self._drop()  # stop() woke us up: give up on this request
        if fault in STATUS_FAULTS:
            code = int(fault)
            extra = {"Retry-After": str(fake.fault_retry_after)} if code == 429 else {}
            if code == 408:
                extra["Connection"] = "close"
            fake._log_request(self.command, path, code, started, headers, fault)
            return self._send(code, envelope(code, STATUS_FAULTS[fault]), extra)
        if fault in ENVELOPE_ERRORS:
            fake._log_request(self.command, path, 200, started, headers, fault)
            return self._send(200, envelope(*ENVELOPE_ERRORS[fault]), {})
        code, payload, extra = fake._process(self.command, self.path, self.headers, body, started)
        if fault == "no_results" and code == 200:
            payload = envelope(200, "OK")
        elif fault == "empty_body" and code == 200:
            payload = None  # type: ignore[assignment]  # the fault: a body of nothing
        if fault == "drop_after":  # processed and recorded, but the client never learns it
            fake._log_request(self.command, path, None, started, headers, fault)
            return self._drop()
        fake._log_request(self.command, path, code, started, headers, fault)  # before answering,
        self._send(code, payload, extra)  # so a test that got the response sees it logged

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline().strip():  # trailers
                pass
            return b"".join(chunks)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            return b""
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, code: int, payload: dict | None, headers: dict) -> None:
        data = b"" if payload is None else json.dumps(payload, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _drop(self) -> None:
        """Close abruptly so the client sees a transport error, not a response."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.connection.close()


class FakeRetently:
    """A Retently look-alike on 127.0.0.1. Recorded state is safe to read from tests."""

    def __init__(
        self,
        api_key: str = "test-key",
        campaigns=None,
        *,
        port: int = 0,
        per_email_failures: bool = False,
        rate_limit_per_minute: int | None = None,
        window_seconds: float = 60.0,
        slow_seconds: float = 1.0,
        fault_retry_after: int = 1,
        fault_rate: float = 0.0,
        fault_choices=None,
        seed: int | None = None,
        verbose: bool = False,
        refused_emails=(),
    ):
        self.api_key = api_key
        # Customers the account will not survey (unsubscribed, say): a 400, or a per-email
        # failure in per_email_failures mode. Tests use it to plant one bad subscriber.
        self.refused_emails = {e.lower() for e in refused_emails}
        self.campaigns = copy.deepcopy(list(DEFAULT_CAMPAIGNS if campaigns is None else campaigns))
        self.port = port
        self.per_email_failures = per_email_failures
        self.rate_limit_per_minute = rate_limit_per_minute
        self.window_seconds = window_seconds
        self.slow_seconds = slow_seconds
        self.fault_retry_after = fault_retry_after
        self.fault_rate = fault_rate
        self.fault_choices = list(DEFAULT_FAULT_CHOICES if fault_choices is None else fault_choices)
        self.verbose = verbose
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.reset()

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> FakeRetently:
        if self._server is None:
            self._stopping.clear()
            self._server = _Server(self, self.port)
            self.port = self._server.server_address[1]
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.02},
                name=f"fake-retently-{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # wakes handlers sleeping on a "slow" fault
        server.shutdown()
        with server.conn_lock:  # unblock handlers idling on keep-alive connections
            for conn in list(server.connections):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=1)

    def __enter__(self) -> FakeRetently:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- recorded state --------------------------------------------------------------------
    def reset(self) -> None:
        """Forget surveys, requests, counters, queued faults and known customers."""
        with self._lock:
            self._surveys: list[dict] = []
            self._requests: list[tuple] = []
            self._faults: list[tuple[str, str | None]] = []
            self._hits: deque[float] = deque()
            self._known_emails: set[str] = set()
            self.rate_limited = 0
            self.key_in_query = 0

    @property
    def surveys(self) -> list[dict]:
        with self._lock:
            return list(self._surveys)

    @property
    def requests(self) -> list[tuple]:
        """(method, path, status or None if dropped, monotonic time, redacted headers)."""
        with self._lock:
            return list(self._requests)

    @property
    def open_connections(self) -> int:
        """Connections still being served: a killed client's slow request may yet be recorded."""
        server = self._server
        if server is None:
            return 0
        with server.conn_lock:
            return len(server.connections)

    def survey_count(self, campaign: str | None = None, email: str | None = None) -> int:
        return sum(
            1
            for s in self.surveys
            if (campaign is None or s["campaign"] == campaign)
            and (email is None or s["email"].lower() == email.lower())
        )

    # -- faults ----------------------------------------------------------------------------
    def inject(self, fault, times: int = 1, path: str | None = None) -> None:
        """Queue `fault` for the next `times` requests (to `path` only, if given)."""
        fault = str(fault)
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; expected one of {sorted(FAULTS)}")
        with self._lock:
            self._faults.extend([(fault, path)] * times)

    def _next_fault(self, path: str) -> str | None:
        with self._lock:
            for i, (fault, fault_path) in enumerate(self._faults):
                if fault_path is None or fault_path == path:
                    del self._faults[i]
                    return fault
            if self.fault_rate and self.fault_choices and self._rng.random() < self.fault_rate:
                return str(self._rng.choice(self.fault_choices))
        return None

    def _log_request(self, method, path, status, started, headers, fault=None) -> None:
        with self._lock:
            self._requests.append((method, path, status, started, headers))
        if self.verbose:
            note = f" (fault: {fault})" if fault else ""
            print(f"{method} {path} {status or 'dropped'}{note}", file=sys.stderr, flush=True)

    # -- request processing ----------------------------------------------------------------
    def _process(self, method, raw_path, headers, body: bytes, started) -> tuple[int, dict, dict]:
        split = urlsplit(raw_path)
        if "api_key" in parse_qs(split.query, keep_blank_values=True):
            with self._lock:
                self.key_in_query += 1
            return 401, envelope(401, BAD_KEY_MESSAGE), {}
        auth = headers.get("Authorization", "").strip()
        if not (
            auth.startswith("api_key=")
            and hmac.compare_digest(auth[len("api_key=") :].encode(), self.api_key.encode())
        ):
            return 401, envelope(401, BAD_KEY_MESSAGE), {}
        if (limited := self._rate_limit()) is not None:
            return 429, envelope(429, "Too many requests"), {"Retry-After": str(limited)}
        route = (method, split.path.rstrip("/"))
        if route == ("GET", "/api/v2/ping"):
            return 200, envelope(200, "OK", {"account": "fake"}), {}
        if route == ("GET", "/api/v2/campaigns"):
            return 200, envelope(200, "OK", None, campaigns=copy.deepcopy(self.campaigns)), {}
        if route == ("POST", "/api/v2/survey"):
            return self._survey(body, started)
        if route[1] in ("/api/v2/ping", "/api/v2/campaigns", "/api/v2/survey"):
            return 405, envelope(405, f"Method {method} not allowed"), {}
        return 404, envelope(404, f"Not found: {split.path}"), {}

    def _rate_limit(self) -> int | None:
        """None if the request may proceed, else the Retry-After seconds."""
        if self.rate_limit_per_minute is None:
            return None
        now = time.monotonic()
        with self._lock:
            while self._hits and self._hits[0] <= now - self.window_seconds:
                self._hits.popleft()
            if len(self._hits) >= self.rate_limit_per_minute:
                self.rate_limited += 1
                return max(1, math.ceil(self._hits[0] + self.window_seconds - now))
            self._hits.append(now)
        return None

    def _problem(self, sub) -> str | None:
        problem = subscriber_problem(sub)
        if problem is None and str(sub.get("email", "")).lower() in self.refused_emails:
            return f"{sub['email']} has unsubscribed"
        return problem

    def _survey(self, raw: bytes, started: float) -> tuple[int, dict, dict]:
        def bad(message):
            return 400, envelope(400, message), {}

        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return bad("Request body must be a JSON object")
        campaign = body.get("campaign")
        if campaign is None:
            return bad("campaign is required")
        if not any(c.get("id") == campaign for c in self.campaigns):
            return bad(f"Unknown campaign: {campaign!r}")
        delay = body.get("delay")
        if "delay" in body and (isinstance(delay, bool) or not isinstance(delay, int) or delay < 0):
            return bad(f"delay must be a non-negative integer (days), got {delay!r}")
        subs = body.get("subscribers")
        if subs is None:
            return bad("subscribers is required")
        if not isinstance(subs, list):
            return bad("subscribers must be a list")
        if not subs:
            return bad("subscribers must not be empty")
        seen = set()
        for sub in subs:
            email = sub.get("email") if isinstance(sub, dict) else None
            if isinstance(email, str) and email:
                if email.lower() in seen:
                    return bad(f"duplicate email in subscribers: {email}")
                seen.add(email.lower())
        problems = [self._problem(sub) for sub in subs]
        if not self.per_email_failures:
            for i, problem in enumerate(problems):
                if problem:
                    return bad(f"subscribers[{i}]: {problem}")
        results = {}
        with self._lock:
            for i, (sub, problem) in enumerate(zip(subs, problems, strict=True)):
                if problem:
                    email = sub.get("email") if isinstance(sub, dict) else None
                    key = email if isinstance(email, str) and email else f"subscribers[{i}]"
                    results[key] = {"status": "failed", "reason": problem}
                    continue
                email = sub["email"]
                known = email.lower() in self._known_emails
                self._known_emails.add(email.lower())
                results[email] = {"status": "updated" if known else "created"}
                self._surveys.append(
                    {
                        "campaign": campaign,
                        "email": email,
                        "subscriber": copy.deepcopy(sub),
                        "delay": delay,
                        "received_at": started,
                    }
                )
        return 200, envelope(200, "OK", results), {}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m retently_cli.fake_server",
        description="Run a fake Retently API on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=8787, help="0 picks a free port")
    parser.add_argument("--api-key", help=f"key clients must send (default: ${EnvVar.API_KEY})")
    parser.add_argument("--rate-limit", type=int, default=None, help="requests per minute")
    parser.add_argument(
        "--fault-rate",
        type=float,
        default=0.0,
        help="share of requests (0..1) hit by a random fault",
    )
    parser.add_argument(
        "--fault-choices",
        default=",".join(DEFAULT_FAULT_CHOICES),
        help="comma-separated faults for --fault-rate",
    )
    parser.add_argument("--slow-seconds", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--per-email-failures", action="store_true")
    args = parser.parse_args(argv)
    api_key, source = args.api_key, "--api-key"
    if not api_key:
        api_key, source = os.environ.get(EnvVar.API_KEY), str(EnvVar.API_KEY)
    if not api_key:
        parser.error(f"give --api-key or set {EnvVar.API_KEY}")
    choices = [c.strip() for c in args.fault_choices.split(",") if c.strip()]
    if unknown := [c for c in choices if c not in FAULTS]:
        parser.error(f"unknown fault(s): {', '.join(unknown)}")
    srv = FakeRetently(
        api_key,
        port=args.port,
        per_email_failures=args.per_email_failures,
        rate_limit_per_minute=args.rate_limit,
        slow_seconds=args.slow_seconds,
        fault_rate=args.fault_rate,
        fault_choices=choices,
        seed=args.seed,
        verbose=True,
    )
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started in background
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    srv.start()
    print(f"Fake Retently listening on {srv.url} (API key from {source})", flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
