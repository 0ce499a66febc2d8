#!/usr/bin/env python3
"""Dry-runs over one set of Segment track events in four shapes, against the same as NDJSON.

    python benchmarks/bench_shapes.py                 # about 1 GB of NDJSON, the issue's goal
    python benchmarks/bench_shapes.py --size-mb 200 --repeat 3
    python benchmarks/bench_shapes.py --quick         # about 20 MB, a smoke run

The track events of a synthetic export (make_export.py, through _harness.ensure_export) are
repeated up to --size-mb of NDJSON, and the same events are written, in a temporary folder, as
a compact JSON array, a pretty-printed array (two-space indent) and a Tracking API batch
document ({"batch": [...], ...} with its context after the array, as analytics-node writes it).
Each file is read by

    python -m retently_cli send --dry-run --no-ledger -o ndjson -c config.example.yaml FILE

best of --repeat, and the table gives each shape's time against the NDJSON run of the same
invocation (so a busy machine slows both), its CPU time (user and system, the mean of the runs,
which other processes disturb less than they do the time) against the NDJSON's, and each run's
peak RSS. Goals (issue 9): time within
1.5x of the NDJSON, peak RSS under 150 MB. Every shape must give as many records as the NDJSON;
a shape that does not is marked. Always exits 0.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _harness import MB, best_of, ensure_export, list_gz_files  # noqa: E402

RATIO_GOAL, RSS_GOAL_MB = 1.5, 150.0
DATA = os.path.join(tempfile.gettempdir(), "retently-bench-shapes")
CONTEXT = {"library": {"name": "analytics-node", "version": "6.2.0"}}


def track_events(export_events: int) -> list[bytes]:
    """The track lines of a synthetic export, compact, as the S3 destination writes them."""
    import gzip  # noqa: PLC0415

    export, _ = ensure_export(export_events, files=4, data_dir=DATA)
    events = []
    for path in list_gz_files(export):
        with gzip.open(path, "rb") as lines:
            events += [line.rstrip(b"\n") for line in lines if b'"type":"track"' in line]
    return events


def write_shapes(folder: Path, events: list[bytes], size: int) -> dict[str, Path]:
    """The same events, repeated to about ``size`` bytes of NDJSON, in every shape."""
    paths = {name: folder / f"{name}.json" for name in ("ndjson", "compact", "pretty", "batch")}
    files = {name: open(path, "wb") for name, path in paths.items()}
    try:
        files["compact"].write(b"[")
        files["pretty"].write(b"[\n")
        files["batch"].write(b'{"batch":[')
        written, first = 0, True
        while written < size:
            for line in events:
                if not first:
                    for name in ("compact", "batch"):
                        files[name].write(b",")
                    files["pretty"].write(b",\n")
                first = False
                files["ndjson"].write(line + b"\n")
                files["compact"].write(line)
                files["batch"].write(line)
                pretty = orjson.dumps(orjson.loads(line), option=orjson.OPT_INDENT_2)
                files["pretty"].write(b"  " + pretty.replace(b"\n", b"\n  "))
                written += len(line) + 1
                if written >= size:
                    break
        files["compact"].write(b"]\n")
        files["pretty"].write(b"\n]\n")
        tail = {"context": CONTEXT, "sentAt": "2025-11-02T00:00:00.000Z"}
        files["batch"].write(b"]," + orjson.dumps(tail)[1:] + b"\n")
    finally:
        for file in files.values():
            file.close()
    return paths


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=1000, help="NDJSON size (default 1000)")
    parser.add_argument("--quick", action="store_true", help="about 20 MB, for a smoke run")
    parser.add_argument("--repeat", type=int, default=1, help="runs per shape, best taken")
    parser.add_argument("--export-events", type=int, default=100_000)
    parser.add_argument(
        "--shapes", default="compact,pretty,batch", help="shapes to run besides the NDJSON"
    )
    args = parser.parse_args(argv)
    size = int((20 if args.quick else args.size_mb) * MB)
    config = HERE.parent / "config.example.yaml"
    events = track_events(min(args.export_events, 20_000) if args.quick else args.export_events)

    with tempfile.TemporaryDirectory(prefix="retently-bench-shapes-") as tmp:
        print(f"writing about {size / MB:,.0f} MB of NDJSON in four shapes ...", file=sys.stderr)
        paths = write_shapes(Path(tmp), events, size)
        results = {}
        chosen = {"ndjson", *args.shapes.split(",")}
        for name, path in paths.items():
            if name not in chosen:
                continue
            command = [sys.executable, "-m", "retently_cli", "send", "--dry-run", "--no-ledger",
                       "-o", "ndjson", "-c", str(config), str(path)]  # fmt: skip
            err = Path(tmp) / f"{name}.err"
            print(f"$ {' '.join(command)} > /dev/null", file=sys.stderr)
            before = _children_cpu()
            seconds, peak, rc, times = best_of(
                args.repeat, command, stdout=subprocess.DEVNULL, stderr=lambda e=err: open(e, "wb")
            )
            cpu = (_children_cpu() - before) / max(1, args.repeat)
            summary = err.read_text(errors="replace")
            found = re.search(r"([\d,]+) records", summary)
            count = int(found.group(1).replace(",", "")) if found else -1
            failed = re.search(r"^failed\s.*?(\d[\d,]*)\s*$", summary, re.M)
            results[name] = (path.stat().st_size, seconds, cpu, peak, rc, count, failed)

    base = results["ndjson"]
    print()
    print("Shared machine: the ratios compare runs of this one invocation; absolute times vary.")
    print(f"{'shape':<9}{'size MB':>10}{'records':>12}{'seconds':>10}{'ratio':>8}{'CPU s':>8}"
          f"{'ratio':>8}{'peak RSS MB':>13}  verdict")  # fmt: skip
    for name, (nbytes, seconds, cpu, peak, rc, count, failed) in results.items():
        ratio = seconds / base[1] if base[1] else float("inf")
        cpu_ratio = cpu / base[2] if base[2] else float("inf")
        problems = []
        if rc not in (0,):
            problems.append(f"exit {rc}")
        if count != base[5] or failed:
            problems.append("records differ from the NDJSON's")
        if name != "ndjson" and ratio > RATIO_GOAL:
            problems.append(f"ratio > {RATIO_GOAL}")
        if peak / MB >= RSS_GOAL_MB:
            problems.append(f"RSS >= {RSS_GOAL_MB:.0f} MB")
        verdict = "FAIL: " + ", ".join(problems) if problems else "PASS"
        print(f"{name:<9}{nbytes / MB:>10,.1f}{count:>12,}{seconds:>10.2f}{ratio:>8.2f}"
              f"{cpu:>8.2f}{cpu_ratio:>8.2f}{peak / MB:>13.1f}  {verdict}")  # fmt: skip
    print(f"\ngoals: time <= {RATIO_GOAL}x the NDJSON's, peak RSS < {RSS_GOAL_MB:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
