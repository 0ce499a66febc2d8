"""The words a run reports with, and its exit codes, defined once.

``Outcome`` and ``Reason`` are ``StrEnum``: each member is the string it stands for, so
records, the summary and the ledger hold exactly the words the README documents. This module
imports nothing but the standard library, so the entry point can use it before anything heavy.
"""

from enum import IntEnum, StrEnum


class Outcome(StrEnum):
    """What happened to an event (the record's ``outcome``)."""

    DRY_RUN = "dry_run"
    SENT = "sent"
    UNCERTAIN = "uncertain"  # sent, but whether it arrived is unknown: never resent blindly
    FAILED = "failed"
    SKIPPED = "skipped"


class Reason(StrEnum):
    """Why an event was not surveyed, or how its delivery went wrong (the record's ``reason``)."""

    # Matching and planning: outcome skipped.
    NOT_TRACK = "not_track"
    RETENTLY_RECORD = "retently_record"  # a line of our own report or dry-run output, read back
    MISSING_EVENT = "missing_event"
    NO_CAMPAIGN = "no_campaign"
    MISSING_EMAIL = "missing_email"
    INVALID_EMAIL = "invalid_email"
    DUPLICATE = "duplicate"
    FILTERED = "filtered"
    LIMIT = "limit"
    ALREADY_SENT = "already_sent"
    ONCE_PER_EMAIL = "once_per_email"
    # Reading: outcome failed (too_deeply_nested is also a skip for a matched event).
    INVALID_JSON = "invalid_json"
    INVALID_UTF8 = "invalid_utf8"
    INVALID_UTF16 = "invalid_utf16"
    NOT_AN_OBJECT = "not_an_object"
    EMPTY_BATCH = "empty_batch"
    LINE_TOO_LONG = "line_too_long"
    TOO_DEEPLY_NESTED = "too_deeply_nested"
    CORRUPT_GZIP = "corrupt_gzip"
    UNREADABLE = "unreadable"
    # Delivery: outcome failed.
    REJECTED = "rejected"  # a 4xx (or 501), or a per-email "failed" result
    RETRIES_EXHAUSTED = "retries_exhausted"
    UNAUTHORIZED = "unauthorized"
    NOT_SENT = "not_sent"  # the run stopped before this was sent
    # Delivery: outcome uncertain.
    CONNECTION_LOST = "connection_lost"  # it may have been delivered
    IN_FLIGHT = "in_flight"  # still unanswered when the run stopped
    INTERNAL_ERROR = "internal_error"  # a bug; a request may have gone out
    EARLIER_RUN = "earlier_run"  # the ledger has it from a run that never learned the result


class ExitCode(IntEnum):
    """The process's exit status, as the README's table and ``--help`` list them."""

    OK = 0
    PROBLEMS = 1
    USAGE = 2
    UNAUTHORIZED = 3
    UNAVAILABLE = 4  # the circuit breaker stopped the run: the API is unreachable or failing
    INTERRUPTED = 130


class EnvVar(StrEnum):
    """The environment variables the tool reads, each an option's default or the key."""

    CONFIG = "RETENTLY_CONFIG"  # --config
    API_KEY = "RETENTLY_API_KEY"  # when the config has no api_key and no --api-key-file
    BASE_URL = "RETENTLY_BASE_URL"  # the API address, over the config's base_url
    LEDGER = "RETENTLY_LEDGER"  # --ledger
