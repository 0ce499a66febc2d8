"""Whatever bytes come in, the run finishes and every line is accounted for."""

import gzip
import re

import helpers
import orjson
import pytest
from helpers import EXAMPLE_CONFIG, records
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SUMMARY = re.compile(
    r"Summary: ([\d,]+) lines read from 1 source(?: \(([\d,]+) blank\))?, ([\d,]+) records?"
)


def split_lines(data: bytes) -> list[bytes]:
    """Lines as the reader ends them: at \\n, \\r\\n or a lone \\r."""
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")


def run(data: bytes):
    result = helpers.run("send", "-n", "-o", "ndjson", "-c", str(EXAMPLE_CONFIG), "-", input=data)
    assert result.exit_code in (0, 1), result.output
    assert "Traceback" not in result.stderr
    match = SUMMARY.search(result.stderr)
    assert match, result.stderr
    lines, blank, total = (int((g or "0").replace(",", "")) for g in match.groups())
    got = records(result.stdout)
    assert len(got) == total
    return got, lines, blank


@pytest.mark.slow
@FAST
@given(st.binary(max_size=2000))
def test_any_bytes_never_crash_and_every_record_is_counted(data):
    got, lines, blank = run(data)
    if data.startswith((b"\x1f\x8b", b"\xff\xfe", b"\xfe\xff")):
        return  # counted in decompressed lines; covered by the gzip test below
    ends = data.endswith((b"\n", b"\r")) or not data
    assert lines == len(split_lines(data)) - (1 if ends else 0)
    assert all(r["outcome"] in ("dry_run", "skipped", "failed") for r in got)


@pytest.mark.slow
@FAST
@given(st.binary(max_size=2000))
def test_any_bytes_gzipped_never_crash(data):
    run(gzip.compress(data))


names = st.sampled_from(["Order Completed", "Onboarding Finished", "order completed", "Other"])
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=8),
)
messages = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["track", "identify", "page"]),
        "event": names,
        "messageId": st.text(min_size=1, max_size=4),
    },
    optional={
        "properties": st.dictionaries(
            st.sampled_from(["email", "firstName", "tags", "plan", "n"]),
            st.one_of(
                scalars,
                st.lists(scalars, max_size=3),
                st.dictionaries(st.text(max_size=3), scalars, max_size=2),
            ),
        )
    },
)
junk = st.one_of(
    st.binary(max_size=40).filter(lambda b: b"\n" not in b and b.strip()),
    st.just(b"[1]"),
    st.just(b'{"a":'),
    st.just(b"\xff\xfe{}"),
)
line = st.one_of(messages.map(orjson.dumps), junk, st.just(b""))


@pytest.mark.slow
@FAST
@given(st.lists(line, max_size=30), messages)
def test_every_non_blank_ndjson_line_yields_records(lines, first):
    data = b"\n".join([orjson.dumps(first), *lines]) + b"\n"
    got, read, blank = run(data)
    rows = split_lines(data)[:-1]
    non_blank = {i + 1 for i, text in enumerate(rows) if text.strip()}
    # junk such as '{"a":' may start a value that the next lines complete (with a message
    # inside it, '{"a":' + message + '}' is one valid object): messages after it may be absorbed
    opener = next((i for i, text in enumerate(rows) if text.strip() == b'{"a":'), len(rows))
    messages = {
        i + 1 for i, text in enumerate(rows[:opener]) if text[:1] == b"{" and _is_object(text)
    }
    assert messages <= {r["line"] for r in got} <= non_blank
    assert read == len(rows)


def _is_object(text: bytes) -> bool:
    try:
        return isinstance(orjson.loads(text), dict)
    except orjson.JSONDecodeError:
        return False
