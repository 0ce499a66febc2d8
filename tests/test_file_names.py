"""A file whose name is not UTF-8 is read like any other; its records name it readably."""

import os

import pytest
from helpers import ndjson, records, send, track


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_file_named_in_latin_1_is_read_and_named_in_its_records(tmp_path, jobs):
    folder = tmp_path / "logs"
    folder.mkdir()
    with open(os.path.join(os.fsencode(folder), b"caf\xe9.ndjson"), "wb") as f:
        f.write(ndjson(track(message_id="m1"), {"type": "page", "messageId": "p1"}))
    result = send("-n", "-o", "ndjson", "--jobs", jobs, folder)
    assert "internal error" not in result.stderr
    assert result.exit_code == 0, result.stderr
    got = records(result.stdout_bytes)
    assert [r["message_id"] for r in got] == ["m1", "m1", "p1"]
    assert {r["source"] for r in got} == {str(folder) + "/caf\ufffd.ndjson"}
