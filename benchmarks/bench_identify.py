#!/usr/bin/env python3
"""Benchmark `send --dry-run` with `identities: {from_identify: true}` against the plain dry-run.

1. Generates (or reuses) benchmarks/data/export-<N> with make_export.py. Its messages mix
   identify calls (about 20%, each with traits.email, firstName, lastName, companyName, by
   userId and anonymousId) with Track calls, 2% of which carry no email at all: those are the
   events the identity pass gives an email.
2. Writes two copies of config.example.yaml: the baseline with from_identify false, the
   candidate with it true; times `python -m retently_cli send --dry-run --output ndjson` with
   each over the export, --repeat runs each, interleaved (a busy machine slows both alike),
   best taken. CPU time (user + system) is printed too: it hardly moves with the load.
3. Prints the times, peak RSS, the surveys whose email came from an identity, and the ratio
   candidate/baseline against the goal (<= 2.0). It reports; it always exits 0.

--spill runs the candidate with the in-memory limit lowered to 1,000 ids, so every identity
lives in the temporary SQLite file: the cost of the bounded-memory path.

Examples:
    python benchmarks/bench_identify.py                        # 1,000,000 events
    python benchmarks/bench_identify.py --events 100000 --repeat 1
    python benchmarks/bench_identify.py --events 100000 --spill
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness as h  # noqa: E402

RATIO_GOAL = 2.0
SPILL_LIMIT = 1_000


def configs(folder: str) -> tuple[str, str]:
    """(baseline, candidate) config paths: the example with from_identify false, then true."""
    with open(os.path.join(h.REPO_ROOT, "config.example.yaml"), encoding="utf-8") as f:
        text = f.read()
    if "from_identify: false" not in text:
        raise SystemExit("config.example.yaml has no 'from_identify: false' to switch")
    paths = []
    for name, value in (("plain.yaml", "false"), ("identify.yaml", "true")):
        path = os.path.join(folder, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text.replace("from_identify: false", f"from_identify: {value}"))
        paths.append(path)
    return paths[0], paths[1]


def command(config: str, export_dir: str, memory_limit: int | None = None) -> list[str]:
    args = ["send", "--dry-run", "--output", "ndjson", "-c", config, export_dir]
    if memory_limit is None:
        return [sys.executable, "-m", "retently_cli", *args]
    code = (
        "import sys; import retently_cli.identities as i; "
        f"i.MEMORY_LIMIT = {memory_limit}; from retently_cli.launch import main; "
        f"sys.argv = ['retently', *{args!r}]; main()"
    )
    return [sys.executable, "-c", code]


def timed(cmd: list[str], out: str, env: dict) -> tuple[float, float, int, int]:
    """(wall seconds, CPU seconds, peak RSS bytes, exit code) of one run, stdout to ``out``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(out, "wb") as stdout:
        secs, rss, rc = h.run_timed(
            cmd, stdout=stdout, stderr=subprocess.DEVNULL, cwd=h.REPO_ROOT, env=env
        )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return secs, cpu, rss, rc


def best(runs: list[tuple]) -> tuple[tuple[float, float, int, int], list[float]]:
    """The best wall and CPU time, the largest peak RSS, the last non-zero exit code; and
    every wall time."""
    walls = [r[0] for r in runs]
    codes = [r[3] for r in runs if r[3] != 0]
    summary = (
        min(walls),
        min(r[1] for r in runs),
        max(r[2] for r in runs),
        codes[-1] if codes else 0,
    )
    return summary, walls


def from_identities(path: str) -> int:
    """Records in an NDJSON output whose email came from an identity."""
    with open(path, "rb") as f:
        return sum(b'"email_source":"identify:' in line for line in f)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    h.add_export_args(ap)
    ap.add_argument("--repeat", type=int, default=3, help="runs per contender, best taken")
    ap.add_argument(
        "--spill",
        action="store_true",
        help=f"hold at most {SPILL_LIMIT:,} ids in memory (the SQLite path)",
    )
    args = ap.parse_args(argv)

    export_dir, meta = h.ensure_export(args.events, seed=args.seed, files=args.files)
    for path in h.list_gz_files(export_dir):  # warm the page cache for both contenders
        with open(path, "rb") as f:
            while f.read(1 << 20):
                pass

    with tempfile.TemporaryDirectory() as folder:
        plain, identify = configs(folder)
        out = os.path.join(folder, "out.ndjson")
        env = {**os.environ, "RETENTLY_LEDGER": os.path.join(folder, "ledger.sqlite3")}

        runs = {"baseline": [], "candidate": []}
        gained = {}
        limit = SPILL_LIMIT if args.spill else None
        contenders = (
            ("baseline", command(plain, export_dir)),
            ("candidate", command(identify, export_dir, limit)),
        )
        for _ in range(max(1, args.repeat)):  # interleaved, so a busy machine slows both alike
            for name, cmd in contenders:
                runs[name].append(timed(cmd, out, env))
                gained[name] = from_identities(out)

    n = meta["events"]
    (b_secs, b_cpu, b_rss, b_rc), b_all = best(runs["baseline"])
    (c_secs, c_cpu, c_rss, c_rc), c_all = best(runs["candidate"])
    b_gained, c_gained = gained["baseline"], gained["candidate"]
    n = meta["events"]
    ratio = c_secs / b_secs if b_secs > 0 else float("inf")
    cpu_ratio = c_cpu / b_cpu if b_cpu > 0 else float("inf")
    ok = b_rc in (0, 1) and c_rc in (0, 1) and ratio <= RATIO_GOAL
    variant = f" (spill: {SPILL_LIMIT:,} ids in memory)" if args.spill else ""
    print()
    print(f"export     {os.path.relpath(export_dir, h.REPO_ROOT)}: {n:,} events")
    print(f"baseline   send --dry-run, from_identify: false  -> exit {b_rc}")
    print(f"candidate  send --dry-run, from_identify: true{variant}  -> exit {c_rc}")
    print(
        f"runs       baseline {', '.join(f'{t:.2f}' for t in b_all)} s; "
        f"candidate {', '.join(f'{t:.2f}' for t in c_all)} s (best of {len(c_all)} taken)"
    )
    print()
    rows = [
        ("seconds (best)", f"{b_secs:.2f}", f"{c_secs:.2f}"),
        ("CPU seconds (best)", f"{b_cpu:.2f}", f"{c_cpu:.2f}"),
        ("events/s", f"{n / b_secs:,.0f}", f"{n / c_secs:,.0f}"),
        ("peak RSS MB", f"{b_rss / h.MB:.1f}", f"{c_rss / h.MB:.1f}"),
        ("emails from identities", f"{b_gained:,}", f"{c_gained:,}"),
    ]
    print(f"{'':<24}{'baseline':>14}{'candidate':>14}")
    for name, b, c in rows:
        print(f"{name:<24}{b:>14}{c:>14}")
    print()
    print(
        f"ratio candidate/baseline  {ratio:.2f}  (goal <= {RATIO_GOAL})  {'PASS' if ok else 'FAIL'}"
    )
    print(f"CPU time ratio            {cpu_ratio:.2f}  (hardly moved by a busy machine)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
