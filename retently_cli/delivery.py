"""Delivering surveys: batches, a client-side rate limit, retries, and per-event outcomes.

The policy (see the README): retry what provably did not take effect (connection failures,
408, 429, 5xx but 501) with capped exponential backoff and full jitter, honouring Retry-After;
slow the whole run down on 429s (a 429 with Retry-After is pacing, not a failed attempt);
fail other 4xx at once, bisecting a rejected batch to find the bad subscriber; stop the whole
run on 401/403. A connection that breaks after the request was written may have delivered it:
that batch is reported ``uncertain`` and not resent, since a second survey annoys a customer
more than a missing one.
"""

from __future__ import annotations

import json
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from retently_cli.client import SURVEY_PATH, Answer, RetentlyClient, survey_body
from retently_cli.config import DELIVERY_DEFAULTS
from retently_cli.ledger import Ledger, LedgerLost
from retently_cli.logs import get_logger
from retently_cli.matching import Decision
from retently_cli.vocabulary import Reason

log = get_logger(__name__)

# Failure reasons, as they appear in the report.
REJECTED = Reason.REJECTED
UNAUTHORIZED = Reason.UNAUTHORIZED
CONNECTION_LOST = Reason.CONNECTION_LOST
IN_FLIGHT = Reason.IN_FLIGHT
INTERNAL_ERROR = Reason.INTERNAL_ERROR
GAVE_UP = Reason.RETRIES_EXHAUSTED
NOT_SENT = Reason.NOT_SENT

_BISECT_STATUSES = frozenset({400, 413, 422})
# Keeps requests a little under the limit, so that jitter between sending here and arriving
# there never puts one request too many into the server's window.
_RATE_MARGIN = 1.02
_SLOWEST = 1.0  # requests a minute: however many 429s, the client never stops altogether
# The circuit breaker: this many requests in a row that end without an answer from the API
# (transport errors or 5xx through all their retries, or a connection lost after sending) mean
# the API is gone; sending more would only turn the rest of the input into failures.
BREAKER_THRESHOLD = 5


@dataclass(slots=True)
class Survey:
    """One surveyable decision waiting to be delivered, with where it came from."""

    source: str
    line: int
    decision: Decision
    message: dict | None = None  # the event as read, for the dead-letter file
    key: str = ""  # the ledger's identity of the event
    when: float | None = None  # when the event happened (epoch seconds)
    reported: bool = False  # its outcome has been written (set by the reporting thread)
    batch: int = 0  # the number of the batch it travels in

    @property
    def email_key(self) -> str:
        email = self.decision.email
        assert email is not None  # a surveyable decision has its email
        return email.lower()


@dataclass(slots=True)
class Outcome:
    survey: Survey
    sent: bool
    status: int | None
    attempts: int
    reason: str | None = None
    detail: str | None = None
    result: str | None = None  # the per-email status Retently answered (created, updated)

    @property
    def uncertain(self) -> bool:
        return self.reason in (CONNECTION_LOST, IN_FLIGHT, INTERNAL_ERROR)

    @classmethod
    def not_sent(cls, survey: Survey, attempts: int = 0) -> Outcome:
        """A survey the run stopped before sending: a re-run sends it."""
        return cls(survey, False, None, attempts, NOT_SENT, "the run stopped first")

    @classmethod
    def in_flight(cls, survey: Survey) -> Outcome:
        """A survey whose request was still unanswered when the run stopped waiting."""
        detail = "still unanswered when the run stopped: it may have been delivered"
        return cls(survey, False, None, 0, IN_FLIGHT, detail)


@dataclass
class Batch:
    campaign: str
    delay: int | None
    surveys: list[Survey] = field(default_factory=list)
    number: int = 0  # which batch of the run, in the order they were begun (from 1)

    def body(self) -> dict:
        body = survey_body(self.surveys[0].decision)
        body["subscribers"] = [s.decision.subscriber for s in self.surveys]
        return body


class _Filling:
    """A batch being filled for one (campaign, delay), and the one begun after it for the
    surveys it cannot take: their email is already in it, or it is full."""

    def __init__(self, campaign: str, delay: int | None, number: int):
        self.batch = Batch(campaign, delay, number=number)
        self.emails: set[str] = set()
        self.next: _Filling | None = None


class Batcher:
    """Groups surveys for the same campaign and delay into batches of up to ``size``.

    Two surveys for the same email never share a batch: the later one goes to the next. A
    survey's batch is known as soon as it is added (``survey.batch``), so a dry-run can name
    the request each survey would travel in, and ``begun`` counts the requests a run takes.
    """

    def __init__(self, size: int):
        self.size = size
        self.begun = 0
        self._filling: dict[tuple, _Filling] = {}

    def add(self, survey: Survey) -> list[Batch]:
        """The batches this survey completes (usually none)."""
        campaign = survey.decision.campaign
        assert campaign is not None  # a surveyable decision has its campaign
        key = (campaign.id, campaign.delay)
        filling = self._filling.get(key)
        if filling is None:
            filling = self._filling[key] = self._begin(campaign.id, campaign.delay)
        email = survey.email_key
        while email in filling.emails or len(filling.batch.surveys) >= self.size:
            if filling.next is None:
                filling.next = self._begin(campaign.id, campaign.delay)
            filling = filling.next
        filling.batch.surveys.append(survey)
        filling.emails.add(email)
        survey.batch = filling.batch.number
        return self._take(key, everything=False)

    def seal_all(self) -> list[Batch]:
        """Every batch, full or not."""
        sealed = []
        for key in list(self._filling):
            sealed += self._take(key, everything=True)
        return sealed

    def _begin(self, campaign: str, delay: int | None) -> _Filling:
        self.begun += 1
        return _Filling(campaign, delay, self.begun)

    def _take(self, key: tuple, everything: bool) -> list[Batch]:
        taken = []
        filling: _Filling | None = self._filling[key]
        while filling is not None and (everything or len(filling.batch.surveys) >= self.size):
            taken.append(filling.batch)
            filling = filling.next
        if filling is None:
            del self._filling[key]
        else:
            self._filling[key] = filling
        return taken


def sending_time(requests: int, per_minute: float) -> float:
    """Seconds ``requests`` take at the pace the rate limiter keeps for ``per_minute``."""
    return requests * 60.0 * _RATE_MARGIN / per_minute


class RateLimiter:
    """Spaces requests evenly so that no 60-second window holds more than ``per_minute``.

    The rate adapts to the server, never above the configured one: a 429 halves it (once for a
    burst of 429s: only a request that asked for its slot after the last cut cuts again), and
    each request that goes through wins back one request a minute. A ``rate_limit`` set higher
    than the account's thus settles near the account's instead of retrying into 429s.
    """

    def __init__(self, per_minute: float | None, clock=time.monotonic):
        self.ceiling = per_minute
        self.clock = clock
        self._rate = float(per_minute) if per_minute else None
        self.interval = self._interval()
        self._next = 0.0
        self._paused_until = 0.0
        self._last_cut = float("-inf")
        self._lock = threading.Lock()

    @property
    def per_minute(self) -> float | None:
        """The rate in force now."""
        return self._rate

    def acquire(self, stop: threading.Event) -> bool:
        """Wait for this request's slot; False if the run is stopping."""
        if not self.interval and not self._next:
            return not stop.is_set()
        while True:
            with self._lock:
                now = self.clock()
                slot = max(now, self._next)
                self._next = slot + self.interval
            wait = slot - self.clock()
            if wait > 0:
                stop.wait(wait)
            if stop.is_set():
                return False
            if slot >= self._paused_until:  # else a 429 paused everyone meanwhile: queue again
                return True

    def pause(self, seconds: float) -> None:
        """Hold every request back for ``seconds`` (the server said so)."""
        with self._lock:
            until = self.clock() + seconds
            self._paused_until = max(self._paused_until, until)
            self._next = max(self._next, until)

    def slow_down(self, asked: float) -> float | None:
        """After a 429 for a request that asked for its slot at ``asked`` (by ``clock``): the
        halved rate, or None when it stays (no limit, at the floor, or already cut since)."""
        with self._lock:
            if self._rate is None or self._rate <= _SLOWEST or asked < self._last_cut:
                return None
            self._rate = max(_SLOWEST, self._rate / 2)
            self.interval = self._interval()
            self._last_cut = self.clock()
            return self._rate

    def succeeded(self) -> None:
        """A request went through: one more request a minute, up to the configured rate."""
        if self._rate is None or self.ceiling is None or self._rate >= self.ceiling:
            return
        with self._lock:
            self._rate = min(float(self.ceiling), self._rate + 1)
            self.interval = self._interval()

    def _interval(self) -> float:
        return 60.0 / self._rate * _RATE_MARGIN if self._rate else 0.0


@dataclass
class RetryPolicy:
    """``max_attempts`` bounds the attempts that failed; a 429 with Retry-After is the server
    pacing the client, not a failure, so it counts only against ``max_paced``."""

    max_attempts: int = DELIVERY_DEFAULTS.max_attempts
    base: float = 0.5
    cap: float = 30.0
    max_retry_after: float = 120.0
    max_paced: int = 30

    def backoff(self, attempt: int, retry_after: str | None) -> float:
        """Seconds to wait before attempt ``attempt + 1``."""
        jitter = random.uniform(0, min(self.cap, self.base * 2 ** (attempt - 1)))
        told = parse_retry_after(retry_after)
        if told is None:
            return jitter
        return min(max(told, jitter), self.max_retry_after)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds from now: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def is_retryable(answer: Answer) -> bool:
    if answer.status is None:
        return not answer.sent and answer.error != "LocalProtocolError"
    return answer.status in (408, 429) or (500 <= answer.status < 600 and answer.status != 501)


def call_with_retries(call: Callable[[], Answer], policy: RetryPolicy, sleep=time.sleep) -> Answer:
    """A read-only call (ping, campaigns), retried as the policy says."""
    attempt = 0
    while True:
        attempt += 1
        answer = call()
        retry = is_retryable(answer) or (answer.status is None and answer.sent)  # a GET is safe
        if not retry or attempt >= policy.max_attempts:
            return answer
        sleep(policy.backoff(attempt, answer.retry_after))


class Sender:
    """Delivers one batch, retrying and bisecting as the policy says. Thread-safe."""

    def __init__(
        self,
        client: RetentlyClient,
        limiter: RateLimiter,
        policy: RetryPolicy,
        stop: threading.Event,
        sleep: Callable[[float], None] | None = None,
        ledger: Ledger | None = None,
        warn: Callable[[str], None] | None = None,
    ):
        self.client = client
        self.ledger = ledger
        self.limiter = limiter
        self.policy = policy
        self.stop = stop
        self.unauthorized = False
        self.ledger_error: Exception | None = None  # the ledger could not be written
        self.unavailable: str | None = None  # why the circuit breaker stopped the run
        self._failing = 0  # requests in a row that ended without a usable answer
        self._failing_lock = threading.Lock()
        self._sleep = sleep or stop.wait
        self._warn = warn or (lambda line: None)
        self._warned: set[str] = set()
        self._warned_lock = threading.Lock()

    def deliver_recorded(self, batch: Batch) -> list[Outcome]:
        """``deliver``, with the ledger told before the first request and after the last."""
        if self.ledger is None:
            return self.deliver(batch)
        began: list = []
        outcomes = self._send(batch, began)
        if not began:  # none of its rows is this run's: pending ones a killed run left stay so
            return outcomes
        campaign = batch.campaign
        for attempt in range(3):
            try:
                self.ledger.settle(
                    sent=[(o.survey.key, campaign, o.status) for o in outcomes if o.sent],
                    uncertain=[(o.survey.key, campaign) for o in outcomes if o.uncertain],
                    not_sent=[
                        (o.survey.key, campaign) for o in outcomes if not o.sent and not o.uncertain
                    ],
                )
                return outcomes
            except LedgerLost as exc:  # it does not come back by waiting; it says what is lost
                self.stop.set()
                return _noted(outcomes, f"the ledger could not record this: {exc}")
            except Exception as exc:  # the ledger is busy or the disk is full: say so, not fail
                problem = exc
                self._sleep(0.5 * (attempt + 1))
        # The outcomes stay what Retently answered; the rows stay pending, so the next run lists
        # these events as uncertain and never resends them blindly.
        self._ledger_failed(problem)
        note = (
            f"the ledger could not record this ({problem}): the next run lists it as uncertain "
            "and does not resend it without --retry-uncertain"
        )
        return _noted(outcomes, note)

    def _ledger_failed(self, problem: Exception) -> None:
        """Nothing more can be recorded, so nothing more is sent: a survey sent unrecorded
        could be sent again by the next run. ``ledger_error`` tells the run why it stopped."""
        assert self.ledger is not None  # only a delivery that records fails at it
        self.ledger_error = self.ledger_error or problem
        self.stop.set()
        self._warn_once(
            "ledger",
            f"retently: the ledger {self.ledger.path} cannot be written ({problem}): nothing "
            "more is sent. Re-run once it can be: what was not sent is sent then.",
        )

    def _warn_once(self, topic: str, line: str) -> None:
        with self._warned_lock:
            if topic in self._warned:
                return
            self._warned.add(topic)
        self._warn(line)

    def deliver(self, batch: Batch) -> list[Outcome]:
        return self._send(batch, None)

    def _send(self, batch: Batch, began: list | None) -> list[Outcome]:
        """``began`` is None when nothing is to be recorded, else it is told when the rows are."""
        body = batch.body()
        attempts = failed = paced = 0
        while True:
            asked = self.limiter.clock()
            if not self.limiter.acquire(self.stop):
                return [Outcome.not_sent(s, attempts) for s in batch.surveys]
            if began is not None and not began:
                assert self.ledger is not None  # ``began`` comes with one (deliver_recorded)
                try:
                    self.ledger.begin(
                        (s.key, batch.campaign, s.decision.email, s.when, s.decision.event)
                        for s in batch.surveys
                    )
                except LedgerLost as exc:  # nothing sent from now on could be remembered
                    self.stop.set()
                    return _all(batch, False, None, attempts, NOT_SENT, str(exc))
                except Exception as exc:  # the disk is full, say: no request has gone out
                    self._ledger_failed(exc)
                    detail = f"the ledger could not record it ({exc}): nothing was sent"
                    return _all(batch, False, None, attempts, NOT_SENT, detail)
                began.append(True)
            attempts += 1
            answer = self.client.post_survey(body)
            self._trace(body, answer, len(batch.surveys))
            if _is_2xx(answer) and envelope_code(answer) not in (401, 403):
                self.limiter.succeeded()
                self._api_answered()
                return _attribute(batch, answer, attempts)
            if answer.status in (401, 403) or envelope_code(answer) in (401, 403):
                self.unauthorized = True
                self.stop.set()
                return _all(batch, False, answer.status, attempts, UNAUTHORIZED, answer.describe())
            if is_retryable(answer):
                if answer.status == 429 and answer.retry_after is not None:
                    paced += 1
                else:
                    failed += 1
                if failed >= self.policy.max_attempts or paced >= self.policy.max_paced:
                    detail = _gave_up(answer, attempts, paced)
                    if answer.status != 429:
                        self._api_failed(
                            f"{attempts} attempts each: {answer.describe(message=False)}"
                        )
                    return _all(batch, False, answer.status, attempts, GAVE_UP, detail)
                wait = self.policy.backoff(max(1, failed), answer.retry_after)
                if answer.status == 429:
                    self._slow_down(asked)
                    self.limiter.pause(wait)
                self._sleep(wait)
                continue
            if answer.status is None:
                what = f"{answer.describe()} after the request was sent"
                self._api_failed(what)
                detail = f"{what}: it may have been delivered"
                return _all(batch, False, None, attempts, CONNECTION_LOST, detail)
            self._api_answered()
            if answer.status in _BISECT_STATUSES and len(batch.surveys) > 1:
                return self._bisect(batch)
            return _all(batch, False, answer.status, attempts, REJECTED, answer.describe())

    def _api_answered(self) -> None:
        with self._failing_lock:
            self._failing = 0

    def _api_failed(self, how: str) -> None:
        """One more request in a row that the API never answered usefully; at
        ``BREAKER_THRESHOLD`` the run stops sending (``unavailable`` says why)."""
        with self._failing_lock:
            self._failing += 1
            if self._failing < BREAKER_THRESHOLD or self.unavailable is not None:
                return
            self.unavailable = f"{self._failing} requests in a row failed ({how})"
        self.stop.set()

    def _slow_down(self, asked: float) -> None:
        rate = self.limiter.slow_down(asked)
        if rate is not None:
            self._warn_once(
                "rate",
                "retently: Retently is answering 429 (too many requests): sending slower than "
                f"rate_limit {self.limiter.ceiling:g}/min (now {rate:.0f}/min, adjusting to what "
                "it accepts). Set rate_limit to the account's limit.",
            )

    def _bisect(self, batch: Batch) -> list[Outcome]:
        middle = len(batch.surveys) // 2
        outcomes = []
        for part in (batch.surveys[:middle], batch.surveys[middle:]):
            outcomes.extend(self.deliver(Batch(batch.campaign, batch.delay, part)))
        return outcomes

    def _trace(self, body: dict, answer: Answer, subscribers: int) -> None:
        """Each request and its answer at INFO (-v); at DEBUG (-vv) one record with the
        bodies too, so that workers' requests never interleave with another's bodies."""
        bodies = log.isEnabledFor(logging.DEBUG)
        if not bodies and not log.isEnabledFor(logging.INFO):
            return
        status = answer.status if answer.status is not None else answer.describe()
        line = (
            f"POST {SURVEY_PATH} {status} {answer.latency * 1000:.0f} ms "
            f"({subscribers} subscriber{'s' if subscribers != 1 else ''})"
        )
        if bodies:
            request, response = json.dumps(body), json.dumps(answer.body)
            log.debug("%s\n  request: %s\n  response: %s", line, request, response)
        else:
            log.info("%s", line)


def _noted(outcomes: list[Outcome], note: str) -> list[Outcome]:
    for outcome in outcomes:
        outcome.detail = f"{outcome.detail}; {note}" if outcome.detail else note
    return outcomes


def _all(batch, sent, status, attempts, reason=None, detail=None) -> list[Outcome]:
    return [Outcome(s, sent, status, attempts, reason, detail) for s in batch.surveys]


def _attribute(batch: Batch, answer: Answer, attempts: int) -> list[Outcome]:
    """Per-event outcomes of a 2xx: a failure when its envelope says so, else from the
    per-email result map when there is one, else sent."""
    refused = envelope_error(answer)
    if refused is not None:
        return _all(batch, False, answer.status, attempts, REJECTED, refused)
    data = answer.body.get("data") if isinstance(answer.body, dict) else None
    results = {k.lower(): v for k, v in data.items()} if isinstance(data, dict) else {}
    outcomes = []
    for survey in batch.surveys:
        result = results.get(survey.email_key)
        result = result if isinstance(result, dict) else {}
        status = result.get("status")
        if status == "failed":
            reason = result.get("reason") or "failed"
            outcomes.append(Outcome(survey, False, answer.status, attempts, REJECTED, str(reason)))
        else:
            outcomes.append(Outcome(survey, True, answer.status, attempts, result=status))
    return outcomes


def _is_2xx(answer: Answer) -> bool:
    return answer.status is not None and 200 <= answer.status < 300


def envelope_code(answer: Answer) -> int | None:
    """The ``code`` of a 2xx answer's ``{message, code, data}`` envelope, when it has one."""
    body = answer.body
    code = body.get("code") if _is_2xx(answer) and isinstance(body, dict) else None
    if isinstance(code, str) and code.strip().isascii() and code.strip().isdigit():
        return int(code)
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def envelope_error(answer: Answer) -> str | None:
    """Why a 2xx answer failed all the same: its envelope ``code`` is 400 or more."""
    code = envelope_code(answer)
    if code is None or code < 400:
        return None
    message = answer.body.get("message") if isinstance(answer.body, dict) else None
    return f"HTTP {answer.status} with code {code}" + (f": {message}" if message else "")


def _gave_up(answer: Answer, attempts: int, paced: int) -> str:
    tried = f"{attempts} attempt{'s' if attempts != 1 else ''}"
    if not paced:
        return f"{tried}: {answer.describe(message=False)}"
    return f"{tried} ({paced} of them HTTP 429), the last: {answer.describe(message=False)}"


class Dispatcher:
    """Worker threads delivering batches; outcomes are collected for the main thread."""

    def __init__(self, sender: Sender, concurrency: int):
        self.sender = sender
        self._todo: queue.Queue = queue.Queue(maxsize=concurrency * 2)
        self._done: queue.Queue = queue.Queue()
        self._in_flight = 0
        self._active: dict[int, Batch] = {}  # worker thread -> the batch it is delivering
        self._lock = threading.Lock()
        self._workers = [
            threading.Thread(target=self._work, name=f"retently-send-{i}", daemon=True)
            for i in range(concurrency)
        ]
        for worker in self._workers:
            worker.start()

    def submit(self, batch: Batch, give_up: Callable[[], bool] = lambda: False) -> bool:
        """Queues ``batch``, waiting for room, unless ``give_up`` says so at a tick of the wait:
        then its surveys are not sent (their outcomes say so). Whether it was queued."""
        with self._lock:
            self._in_flight += len(batch.surveys)
        try:
            while True:
                try:
                    self._todo.put(batch, timeout=0.1)
                    return True
                except queue.Full:
                    if give_up():
                        break
        except BaseException:  # an error while waiting for room: the batch still gets outcomes
            self._not_sent(batch)
            raise
        self._not_sent(batch)
        return False

    def _not_sent(self, batch: Batch) -> None:
        for survey in batch.surveys:
            self._done.put(Outcome.not_sent(survey))

    def outcomes(self) -> list[Outcome]:
        """Whatever outcomes are ready now, without waiting."""
        ready = []
        while True:
            try:
                ready.append(self._done.get_nowait())
            except queue.Empty:
                break
        if ready:
            with self._lock:
                self._in_flight -= len(ready)
        return ready

    def finish(self, timeout: float | None = None) -> None:
        """No more batches: let the workers deliver what is queued, then stop them."""
        for _ in self._workers:
            self._todo.put(None)
        deadline = None if timeout is None else time.monotonic() + timeout
        for worker in self._workers:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            worker.join(left)

    def close(self) -> None:
        """The run is over: idle workers end, and none is waited for (``finish`` waits)."""
        for _ in self._workers:
            try:
                self._todo.put_nowait(None)
            except queue.Full:  # only after a stop that left batches queued: daemons all
                return

    def wait_for_outcome(self, timeout: float) -> Outcome | None:
        try:
            outcome = self._done.get(timeout=timeout)
        except queue.Empty:
            return None
        with self._lock:
            self._in_flight -= 1
        return outcome

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    def abandon(self) -> list[Outcome]:
        """Outcomes for whatever is left when the run cannot wait any longer: batches still
        queued were not sent; batches being delivered are uncertain (the ledger has them
        pending, so a later run will not resend them blindly)."""
        left = self.outcomes()
        while True:
            try:
                batch = self._todo.get_nowait()
            except queue.Empty:
                break
            if batch is not None:
                left += [Outcome.not_sent(s) for s in batch.surveys]
        with self._lock:
            active = list(self._active.values())
        for batch in active:
            left += [Outcome.in_flight(s) for s in batch.surveys]
        return left

    def _work(self) -> None:
        me = threading.get_ident()
        while True:
            batch = self._todo.get()
            if batch is None:
                return
            with self._lock:
                self._active[me] = batch
            try:
                results = self.sender.deliver_recorded(batch)
            except Exception as exc:  # a bug must not lose the batch's events silently
                results = _all(batch, False, None, 0, INTERNAL_ERROR, repr(exc))
            with self._lock:
                del self._active[me]
            for outcome in results:
                self._done.put(outcome)
