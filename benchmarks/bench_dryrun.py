#!/usr/bin/env python3
"""Benchmark `retently send --dry-run` against `gzip -dc | wc -l` on a synthetic export.

1. Generates (or reuses) benchmarks/data/export-<N> with make_export.py.
2. Times the baseline  `gzip -dc FILES | wc -l`  (all .gz files, sorted) and the
   candidate  `python -m retently_cli send --dry-run --output ndjson
   -c config.example.yaml <export dir>`, best of --repeat runs each.
3. Measures the candidate's peak RSS.
4. Prints a table with PASS/FAIL against the goals: candidate/baseline time
   ratio <= 3.0 and peak RSS < 150 MB.  It reports; it always exits 0.

Examples:
    python benchmarks/bench_dryrun.py                       # 1,000,000 events
    python benchmarks/bench_dryrun.py --events 20000 --repeat 1
    python benchmarks/bench_dryrun.py --keep-output /tmp/dryrun.ndjson
    python benchmarks/bench_dryrun.py --candidate-cmd 'gzip -dc {files}'

--candidate-cmd replaces the candidate with a shell command; these
placeholders are substituted (shell-quoted): {files} the sorted .gz files,
{export} the export directory, {config} the config path, {python} this
interpreter.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness as h  # noqa: E402

RATIO_GOAL = 3.0
RSS_GOAL_MB = 150.0


def warm_cache(files: list[str]) -> None:
    """Read every file once so neither contender pays for cold disk reads."""
    for path in files:
        with open(path, "rb") as f:
            while f.read(1 << 20):
                pass


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    ap.add_argument("--events", type=int, default=1_000_000, help="export size (default 1000000)")
    ap.add_argument("--seed", type=int, default=1, help="export seed (default 1)")
    ap.add_argument("--files", type=int, default=10, help="export .gz files (default 10)")
    ap.add_argument(
        "--repeat", type=int, default=3, help="runs per contender, best taken (default 3)"
    )
    ap.add_argument(
        "--config",
        default=os.path.join(h.REPO_ROOT, "config.example.yaml"),
        help="config for the candidate (default: <repo>/config.example.yaml)",
    )
    ap.add_argument(
        "--keep-output",
        metavar="FILE",
        help="save the candidate's stdout to FILE instead of /dev/null",
    )
    ap.add_argument(
        "--candidate-cmd",
        metavar="SHELL_CMD",
        help="override the candidate with a shell command (see placeholders above)",
    )
    args = ap.parse_args(argv)

    export_dir, meta = h.ensure_export(args.events, seed=args.seed, files=args.files)
    files = h.list_gz_files(export_dir)
    config = os.path.abspath(args.config)
    n = meta["events"]
    raw_mb = meta["uncompressed_bytes"] / h.MB

    if args.candidate_cmd:
        cand_cmd = args.candidate_cmd.format(
            files=" ".join(shlex.quote(f) for f in files),
            export=shlex.quote(export_dir),
            config=shlex.quote(config),
            python=shlex.quote(sys.executable),
        )
        cand_shell = True
        cand_label = args.candidate_cmd
    else:
        cand_cmd = [
            sys.executable,
            "-m",
            "retently_cli",
            "send",
            "--dry-run",
            "--output",
            "ndjson",
            "-c",
            config,
            export_dir,
        ]
        cand_shell = False
        cand_label = (
            "python -m retently_cli send --dry-run --output ndjson -c "
            f"{os.path.relpath(config, h.REPO_ROOT)} "
            f"{os.path.relpath(export_dir, h.REPO_ROOT)}"
        )
        if not os.path.isfile(config):
            print(f"warning: config {config} does not exist (yet)", file=sys.stderr)
    base_cmd = "gzip -dc " + " ".join(shlex.quote(f) for f in files) + " | wc -l"

    warm_cache(files)

    # baseline
    with tempfile.TemporaryFile() as out:
        b_secs, b_rss, b_rc, b_all = h.best_of(
            args.repeat, base_cmd, shell=True, stdout=out, cwd=h.REPO_ROOT
        )
        out.seek(0)
        counted = out.read().decode().split()
    base_lines = int(counted[-1]) if counted else -1

    # candidate
    def cand_stdout():
        if args.keep_output:
            return open(args.keep_output, "wb")  # truncated on every repeat
        return open(os.devnull, "wb")

    with tempfile.TemporaryFile() as err:
        c_secs, c_rss, c_rc, c_all = h.best_of(
            args.repeat, cand_cmd, shell=cand_shell, stdout=cand_stdout, stderr=err, cwd=h.REPO_ROOT
        )
        err.seek(0)
        stderr_tail = err.read().decode("utf-8", "replace").splitlines()[-15:]

    ratio = c_secs / b_secs if b_secs > 0 else float("inf")
    rss_mb = c_rss / h.MB
    ratio_ok = c_rc == 0 and ratio <= RATIO_GOAL
    rss_ok = c_rc == 0 and rss_mb < RSS_GOAL_MB

    print()
    print(
        f"export     {os.path.relpath(export_dir, h.REPO_ROOT)}: {n:,} events in {len(files)} "
        f"files, {raw_mb:.1f} MB NDJSON ({meta['avg_bytes_per_event']:.0f} B/event), "
        f"{meta['compressed_bytes'] / h.MB:.1f} MB gzipped"
    )
    print(
        f"baseline   {'gzip -dc FILES | wc -l'}  -> {base_lines:,} lines"
        + ("" if base_lines == n else f"  (!= {n} events)")
    )
    print(f"candidate  {cand_label}  -> exit {c_rc}")
    print(
        f"runs       baseline {', '.join(f'{t:.2f}' for t in b_all)} s; "
        f"candidate {', '.join(f'{t:.2f}' for t in c_all)} s (best of {len(c_all)} taken)"
    )
    print()
    rows = [
        ("events", f"{n:,}", f"{n:,}"),
        ("seconds (best)", f"{b_secs:.2f}", f"{c_secs:.2f}"),
        (
            "events/s",
            f"{n / b_secs:,.0f}" if b_secs else "-",
            f"{n / c_secs:,.0f}" if c_secs else "-",
        ),
        (
            "MB/s (uncompressed)",
            f"{raw_mb / b_secs:.1f}" if b_secs else "-",
            f"{raw_mb / c_secs:.1f}" if c_secs else "-",
        ),
        ("peak RSS MB", f"{b_rss / h.MB:.1f}", f"{rss_mb:.1f}"),
    ]
    w0 = max(len(r[0]) for r in rows) + 2
    print(f"{'':<{w0}}{'baseline':>14}{'candidate':>14}")
    for name, b, c in rows:
        print(f"{name:<{w0}}{b:>14}{c:>14}")
    print()
    print(
        f"ratio candidate/baseline  {ratio:.2f}  (goal <= {RATIO_GOAL})  "
        f"{'PASS' if ratio_ok else 'FAIL'}"
    )
    print(
        f"candidate peak RSS        {rss_mb:.1f} MB  (goal < {RSS_GOAL_MB:.0f} MB)  "
        f"{'PASS' if rss_ok else 'FAIL'}"
    )
    if c_rc != 0:
        print(f"\ncandidate exited with {c_rc}; last stderr lines:")
        for line in stderr_tail:
            print("  " + line)
    if b_rc != 0:
        print(f"\nwarning: baseline exited with {b_rc}")
    if args.keep_output:
        print(f"\ncandidate stdout of the last run saved to {args.keep_output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
