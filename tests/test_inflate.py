"""Gzip inputs through the CLI: every member, in order, whatever chunk a boundary falls in, and
one corrupt_gzip record where the data goes bad (ISA-L inflates; zlib used to)."""

import gzip
import random

import orjson
from click.testing import CliRunner
from helpers import EXAMPLE_CONFIG, ndjson, track

from retently_cli.cli import cli

PER = 1600  # events of a gzip member: over a megabyte compressed


def _members(count: int, per: int) -> tuple[list[bytes], list[str]]:
    """``count`` gzip members of ``per`` events each, with incompressible padding so that
    members are around a megabyte and their boundaries fall inside the reader's chunks."""
    rng = random.Random(7)
    members, ids = [], []
    for m in range(count):
        batch = []
        for n in range(per):
            ids.append(f"{m}-{n}")
            batch.append(track("Product Viewed", ids[-1], pad=rng.randbytes(600).hex()))
        members.append(gzip.compress(ndjson(*batch), compresslevel=1))
    return members, ids


def _send(tmp_path, data: bytes):
    path = tmp_path / "export.gz"
    path.write_bytes(data)
    args = ["send", "-n", "-o", "ndjson", "-c", str(EXAMPLE_CONFIG), str(path)]
    result = CliRunner().invoke(cli, args)
    records = [orjson.loads(line) for line in result.stdout_bytes.splitlines()]
    return result, records


def test_every_member_of_a_multi_member_gzip_is_read_in_order(tmp_path):
    members, ids = _members(4, PER)
    assert all(len(m) > 1 << 20 for m in members)
    result, records = _send(tmp_path, b"".join(members))
    assert result.exit_code == 0
    assert [r["message_id"] for r in records] == ids
    assert [r["line"] for r in records] == list(range(1, len(ids) + 1))


def test_data_after_the_last_member_is_one_corrupt_gzip_record_after_every_event(tmp_path):
    members, ids = _members(2, PER)
    result, records = _send(tmp_path, b"".join(members) + b"trailing junk")
    assert result.exit_code == 1
    assert [r["message_id"] for r in records if r["outcome"] == "skipped"] == ids
    assert [r["reason"] for r in records if r["outcome"] == "failed"] == ["corrupt_gzip"]
    assert records[-1]["detail"] == "data after the end of the gzip stream"


def test_a_corrupt_member_keeps_the_events_before_it_and_ends_the_file(tmp_path):
    members, ids = _members(3, PER)
    middle = bytearray(members[1])
    middle[len(middle) // 2 : len(middle) // 2 + 64] = random.Random(3).randbytes(64)
    result, records = _send(tmp_path, members[0] + bytes(middle) + members[2])
    assert result.exit_code == 1
    read = [r["message_id"] for r in records if r["outcome"] == "skipped"]
    assert read[:PER] == ids[:PER]
    assert not any(message_id.startswith("2-") for message_id in read)
    assert records[-1]["reason"] == "corrupt_gzip"
    assert records[-1]["detail"].startswith("corrupt gzip data: ")


class _Pieces:
    """A stream that gives ``pieces`` one read at a time, as a pipe may."""

    def __init__(self, pieces):
        self.pieces = list(pieces)

    def read1(self, size=-1):
        return self.pieces.pop(0) if self.pieces else b""

    def close(self):
        pass


def _last_detail(pieces) -> str:
    from retently_cli.readers import ReadStats, Source, read_source

    source = Source("-", lambda: _Pieces(pieces))
    return list(read_source(source, ReadStats()))[-1][1].message


def test_what_follows_the_last_member_is_told_the_same_wherever_a_read_ends():
    """A byte that may start another member (\\x1f) at the end of a read, and junk after it:
    still data after the end, not a download cut short, as when one read holds it all."""
    member = gzip.compress(ndjson(track("Product Viewed", "m1")))
    for tail, said in [
        (b"\x1f\x00junk\n", "data after the end of the gzip stream"),
        (b"\x1fjunk", "data after the end of the gzip stream"),
        (b"\x1f", "gzip stream ends early (a truncated download?)"),
        (b"x", "data after the end of the gzip stream"),
        (b"\x1f\x8b", "gzip stream ends early (a truncated download?)"),
    ]:
        data = member + tail
        cut = len(member) + 1
        assert _last_detail([data]) == said
        assert _last_detail([data[:cut], data[cut:]]) == said
        assert _last_detail([data[:cut]] + [bytes([b]) for b in data[cut:]]) == said
