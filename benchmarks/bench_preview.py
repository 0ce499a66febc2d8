"""diff and coverage against a dry-run of the same input, in the same run.

    python benchmarks/bench_preview.py                  # 1,000,000 events, best of 3
    python benchmarks/bench_preview.py --events 200000 --repeat 1

Times, on the synthetic S3-style export:
  baseline  retently send --dry-run --no-ledger --output ndjson -c config.example.yaml EXPORT
  diff      retently diff config.example.yaml NEW.yaml EXPORT   (NEW moves and adds events)
  coverage  retently coverage -c config.example.yaml EXPORT
Goal: diff and coverage each take at most 1.5x the baseline. Always exits 0.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _harness import best_of, ensure_export, peak_rss_mb  # noqa: E402

GOAL = 1.5


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    export, _ = ensure_export(args.events)
    old = HERE.parent / "config.example.yaml"
    with tempfile.TemporaryDirectory(prefix="bench-preview-") as tmp:
        new = Path(tmp) / "new.yaml"
        new.write_text(
            old.read_text()
            .replace('"Order Completed, Subscription Renewed"', '"Order Completed, Product Viewed"')
            .replace(
                'events: ["Support Ticket Closed", "Order Completed"]',
                'events: ["Support Ticket Closed", "Subscription Renewed"]',
            )  # fmt: skip
        )
        py = [sys.executable, "-m", "retently_cli"]
        commands = {
            "dry-run": [*py, "send", "-n", "--no-ledger", "-o", "ndjson", "-c", str(old), export],
            "diff": [*py, "diff", str(old), str(new), export],
            "coverage": [*py, "coverage", "-c", str(old), export],
        }
        results = {}
        for name, command in commands.items():
            print(f"$ {' '.join(command)} > /dev/null", file=sys.stderr)
            seconds, rss, rc, times = best_of(
                args.repeat, command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            results[name] = (seconds, rss, rc, times)

    base = results["dry-run"][0]
    print()
    print(f"events {args.events:,}")
    print(f"{'':10} {'seconds':>8} {'events/s':>10} {'RSS MB':>8} {'exit':>5} {'ratio':>6}  runs")
    for name, (seconds, rss, rc, times) in results.items():
        ratio = seconds / base
        verdict = "" if name == "dry-run" else ("PASS" if ratio <= GOAL else "FAIL")
        runs = ", ".join(f"{t:.2f}" for t in times)
        print(
            f"{name:10} {seconds:>8.2f} {args.events / seconds:>10,.0f} {peak_rss_mb(rss):>8.1f} "
            f"{rc:>5} {ratio:>6.2f}  {runs}  {verdict}"
        )
    print(f"goal: diff and coverage at most {GOAL}x the dry-run (diff exits 1: it found changes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
