"""Re-running a finished backfill: every survey already in the ledger, nothing left to send.

Generates (or reuses) the synthetic S3-style export, delivers it once to the fake Retently
server with its rate limit off (filling a fresh ledger), then times in the same run:

  baseline   retently send --dry-run --no-ledger --output ndjson EXPORT
  candidate  retently send --output ndjson EXPORT        (the same ledger: all already_sent)

Goal: the candidate takes at most 2x the baseline. Always exits 0: it reports, it is no test.

    python benchmarks/bench_ledger.py                 # 1,000,000 events
    python benchmarks/bench_ledger.py --events 100000 --repeat 1
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _harness import best_of, ensure_export, peak_rss_mb, run_timed  # noqa: E402

from retently_cli.fake_server import DEFAULT_CAMPAIGNS, FakeRetently  # noqa: E402

API_KEY = "bench-key"
GOAL = 2.0


def write_config(tmp: Path) -> Path:
    example = (HERE.parent / "config.example.yaml").read_text()
    config = tmp / "config.yaml"
    # the example's campaigns, sent as fast as the fake server answers
    config.write_text(example.replace("rate_limit: 150", "rate_limit: 100000"))
    return config


def outcomes(path: Path) -> Counter:
    counts: Counter = Counter()
    with open(path, "rb") as f:
        for line in f:
            record = orjson.loads(line)
            counts[(record["outcome"], record["reason"])] += 1
    return counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    export, _ = ensure_export(args.events)
    ids = {c["id"] for c in DEFAULT_CAMPAIGNS}
    assert {"5e1f9a3c2b7d4e0012ab34cd", "61ab2c9d8e7f6a0011bc45de"} <= ids
    with (
        tempfile.TemporaryDirectory(prefix="bench-ledger-") as tmp_name,
        FakeRetently(api_key=API_KEY) as server,
    ):
        tmp = Path(tmp_name)
        config = write_config(tmp)
        ledger = tmp / "ledger.sqlite3"
        env = {
            **os.environ,
            "RETENTLY_API_KEY": API_KEY,
            "RETENTLY_BASE_URL": server.url,
            "RETENTLY_LEDGER": str(ledger),
        }
        py = [sys.executable, "-m", "retently_cli", "send", "-c", str(config), "-o", "ndjson"]

        first_out = tmp / "first.ndjson"
        print(f"$ {' '.join(py)} {export} > first.ndjson   (fills the ledger)", file=sys.stderr)
        with open(first_out, "wb") as out:
            fill_seconds, _, fill_rc = run_timed(
                [*py, export], stdout=out, stderr=subprocess.DEVNULL, env=env
            )
        first = outcomes(first_out)
        delivered = server.survey_count()

        baseline_cmd = [*py, "--dry-run", "--no-ledger", export]
        candidate_cmd = [*py, export]
        print(f"$ {' '.join(baseline_cmd)} > /dev/null", file=sys.stderr)
        print(f"$ {' '.join(candidate_cmd)} > rerun.ndjson", file=sys.stderr)
        rerun_out = tmp / "rerun.ndjson"
        quiet = {"env": env, "stderr": subprocess.DEVNULL}
        base_s, base_rss, base_rc, base_all = best_of(args.repeat, baseline_cmd, **quiet)
        cand_s, cand_rss, cand_rc, cand_all = best_of(
            args.repeat, candidate_cmd, stdout=lambda: open(rerun_out, "wb"), **quiet
        )
        rerun = outcomes(rerun_out)
        requests_after = len([r for r in server.requests if r[1] == "/api/v2/survey"])
        sent_again = server.survey_count() - delivered

    ratio = cand_s / base_s
    print()
    print(f"events                       {args.events:,}")
    print(f"first run (fills ledger)     {fill_seconds:.2f} s, exit {fill_rc}, "
          f"{first[('sent', None)]:,} sent, {delivered:,} recorded by the server")  # fmt: skip
    print(f"runs (s)                     baseline {', '.join(f'{t:.2f}' for t in base_all)}; "
          f"re-run {', '.join(f'{t:.2f}' for t in cand_all)} (best taken)")  # fmt: skip
    print()
    print(f"{'':28} {'dry-run':>12} {'re-run':>12}")
    print(f"{'seconds (best)':28} {base_s:>12.2f} {cand_s:>12.2f}")
    print(f"{'events/s':28} {args.events / base_s:>12,.0f} {args.events / cand_s:>12,.0f}")
    print(f"{'peak RSS MB':28} {peak_rss_mb(base_rss):>12.1f} {peak_rss_mb(cand_rss):>12.1f}")
    print(f"{'exit code':28} {base_rc:>12} {cand_rc:>12}")
    print()
    print(f"re-run outcomes              already_sent {rerun[('skipped', 'already_sent')]:,}; "
          f"sent {rerun[('sent', None)]:,}; uncertain "
          f"{sum(n for (o, _), n in rerun.items() if o == 'uncertain'):,}")  # fmt: skip
    print(
        f"surveys sent again           {sent_again:,}  (survey requests in all: {requests_after:,})"
    )
    verdict = "PASS" if ratio <= GOAL and sent_again == 0 else "FAIL"
    print(f"ratio re-run/dry-run         {ratio:.2f}  (goal <= {GOAL})  {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
