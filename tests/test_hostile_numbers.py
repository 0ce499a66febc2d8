"""Numbers no JSON reader can hold stop nothing: their line is reported, the run goes on."""

import orjson
import pytest
from helpers import records, send, stderr_lines, track

import retently_cli.matching


@pytest.mark.parametrize(
    "number", [b"1" + b"0" * 400, b"-" + b"9" * 400, b"1e400", b"-1E+400", b"1.5e0309"]
)
def test_a_huge_number_on_a_line_of_two_values_is_that_lines_fault_only(tmp_path, number):
    # Two values on one line are read by the slow path, which must refuse what orjson refuses.
    bad = b'{"type":"page","messageId":"p1","x":%s} {"type":"page","messageId":"p2"}' % number
    path = tmp_path / "events.ndjson"
    path.write_bytes(b"\n".join([bad, orjson.dumps(track("Order Completed", "m1"))]) + b"\n")
    result = send("-n", "-o", "ndjson", path)
    assert "internal error" not in result.stderr
    found = records(result.stdout_bytes)
    assert [(r["line"], r["outcome"], r["reason"]) for r in found] == [
        (1, "failed", "invalid_json"),
        (2, "dry_run", None),  # the example maps Order Completed to two campaigns
        (2, "dry_run", None),
    ]
    assert "infinity" in found[0]["detail"]
    assert result.exit_code == 1


def test_an_internal_error_at_vv_shows_where_it_happened(tmp_path, monkeypatch):
    def broken(self, event):
        raise RuntimeError("a defect in the matcher")

    monkeypatch.setattr(retently_cli.matching.Matcher, "decide", broken)
    path = tmp_path / "events.ndjson"
    path.write_bytes(orjson.dumps(track("Order Completed", "m1")) + b"\n")
    result = send("-n", "-vv", path)
    text = "\n".join(stderr_lines(result))
    assert "internal error (RuntimeError: a defect in the matcher)" in text
    assert "Traceback" in text and "in broken" in text
    assert result.exit_code == 1
