"""A one-week --since/--until dry-run over a 60-day export, against the full dry-run.

    python benchmarks/bench_pruning.py                   # 600,000 events in 60 day folders
    python benchmarks/bench_pruning.py --events 120000 --repeat 1

The export (Segment's S3 layout, 3 files a day) is generated once under
/tmp/retently-bench-pruning. Times, best of --repeat:
  full     retently send -n --no-ledger -o ndjson -c config.example.yaml EXPORT
  pruned   the same with --since DAY20 --until DAY27 (and the default --max-lateness 7)
It prints the time ratio and the day folders each run opened (from the summary). Day folders
from since-1d to until+7d are opened: 15 of 60. Always exits 0.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _harness import best_of, ensure_export  # noqa: E402

DATA = os.path.join(tempfile.gettempdir(), "retently-bench-pruning")
FIRST_DAY = dt.datetime(2025, 11, 1, tzinfo=dt.UTC)  # make_export's first received day
DAYS, FILES_PER_DAY = 60, 3


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=600_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    export, _ = ensure_export(args.events, files=DAYS * FILES_PER_DAY, data_dir=DATA)
    config = HERE.parent / "config.example.yaml"
    since, until = FIRST_DAY + dt.timedelta(days=20), FIRST_DAY + dt.timedelta(days=27)
    base = [sys.executable, "-m", "retently_cli", "send", "-n", "--no-ledger", "-o", "ndjson"]
    commands = {
        "full": [*base, "-c", str(config), export],
        "pruned": [*base, "-c", str(config), "--since", since.date().isoformat(),
                   "--until", until.date().isoformat(), export],
    }  # fmt: skip
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, command in commands.items():
            print(f"$ {' '.join(command)} > /dev/null", file=sys.stderr)
            err = Path(tmp) / f"{name}.err"
            seconds, _, rc, times = best_of(
                args.repeat, command, stdout=subprocess.DEVNULL, stderr=lambda e=err: open(e, "wb")
            )
            summary = err.read_text()
            opened = re.search(r"lines read from ([\d,]+) source", summary)
            pruned = re.search(r"([\d,]+) day folders pruned", summary)
            files = int(opened.group(1).replace(",", "")) if opened else -1
            results[name] = (seconds, rc, times, files, pruned.group(1) if pruned else "0")
    print()
    print(f"events {args.events:,} in {DAYS} day folders ({FILES_PER_DAY} files each)")
    print(f"{'':8} {'seconds':>8} {'files':>6} {'folders':>8} {'pruned':>7} {'exit':>5}  runs")
    for name, (seconds, rc, times, files, pruned) in results.items():
        runs = ", ".join(f"{t:.2f}" for t in times)
        folders = files // FILES_PER_DAY
        print(f"{name:8} {seconds:>8.2f} {files:>6} {folders:>8} {pruned:>7} {rc:>5}  {runs}")
    ratio = results["pruned"][0] / results["full"][0]
    print(f"pruned/full time ratio {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
