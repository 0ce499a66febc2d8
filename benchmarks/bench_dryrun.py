#!/usr/bin/env python3
"""Benchmark `retently send --dry-run`, `diff` and `coverage` against `gzip -dc | wc -l`.

Every row of issue 10's table, each as a ratio to its own baseline measured in the same run
(runs of the two alternate, the median of each is taken), so a busy machine slows both alike:

  send -n -o ndjson        with PYTHONUNBUFFERED=1 and without it (worker processes by default)
  send -n -o ndjson --jobs 1   the same in one process
  send -n (table)          with PYTHONUNBUFFERED=1 and without it
  diff, coverage           (diff: the example config against a copy that maps one more name)
  stdin                    gzip -dc FILES | retently send -n -o ndjson -
  10,000 small files       the same events split into 10,000 small .gz files
  unique names             every track event a different name (the near-miss hints)
  jq                       gzip -dc FILES | jq -c 'select(...)', what a user would do instead
  --big N                  send -n -o ndjson on an export of N events (issue: 5,000,000)

Peak RSS is the candidate's (VmHWM). It reports; it always exits 0.

Examples:
    python benchmarks/bench_dryrun.py                 # 1,000,000 events, 3 paired runs a row
    python benchmarks/bench_dryrun.py --quick         # 20,000 events, 1 run: a smoke test
    python benchmarks/bench_dryrun.py --events 200000 --rows ndjson,stdin
    python benchmarks/bench_dryrun.py --big 5000000 --rows big
    python benchmarks/bench_dryrun.py --rows ndjson,table --against /tmp/main-checkout
"""

from __future__ import annotations

import argparse
import gzip
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness as h  # noqa: E402

RATIO_GOAL = 1.5
GOALS = {"diff": 2.25, "coverage": 2.25, "stdin": 2.5, "small": 2.0, "unique": 2.5}
RSS_GOAL_MB = 150.0
SMALL_FILES = 10_000
JQ_FILTER = (
    'select(.type == "track" and (.event == "Order Completed" or .event == "Onboarding Finished"))'
)


def warm_cache(files: list[str]) -> None:
    """Read every file once so neither contender pays for cold disk reads."""
    for path in files:
        with open(path, "rb") as f:
            while f.read(1 << 20):
                pass


def _events(files: list[str]):
    for path in files:
        with gzip.open(path, "rb") as f:
            yield from f


def small_files(export_dir: str, files: list[str], count: int) -> str:
    """The export's events split into ``count`` small .gz files (made once, then reused)."""
    target = f"{export_dir}-small{count}"
    if os.path.isdir(target):
        return target
    lines = list(_events(files))
    tmp = target + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    per = -(-len(lines) // count)
    for index in range(count):
        folder = os.path.join(tmp, f"{index // 1000:03d}")
        os.makedirs(folder, exist_ok=True)
        with gzip.open(os.path.join(folder, f"{index:05d}.gz"), "wb", compresslevel=1) as f:
            f.writelines(lines[index * per : (index + 1) * per])
    os.rename(tmp, target)
    return target


def unique_names(export_dir: str, files: list[str]) -> str:
    """The export with every track event renamed to a name no other event has."""
    import orjson

    target = f"{export_dir}-unique"
    if os.path.isdir(target):
        return target
    tmp = target + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    number = 0
    for index, path in enumerate(files):
        with (
            gzip.open(path, "rb") as src,
            gzip.open(os.path.join(tmp, f"{index:03d}.gz"), "wb", compresslevel=1) as out,
        ):
            for line in src:
                event = orjson.loads(line)
                if event.get("type") == "track":
                    number += 1
                    event["event"] = f"{event['event']} {number}"
                out.write(orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE))
    os.rename(tmp, target)
    return target


def diff_config(config: str, folder: str) -> str:
    """A copy of ``config`` whose onboarding campaign also takes "Product Viewed"."""
    with open(config, encoding="utf-8") as f:
        text = f.read()
    changed = text.replace('"Onboarding Finished"', '"Onboarding Finished, Product Viewed"', 1)
    path = os.path.join(folder, "new.yaml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(changed)
    return path


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def paired(repeat: int, base: str, cand: str, env: dict, cwd: str):
    """(median baseline s, median candidate s, candidate peak RSS bytes, median baseline CPU s,
    median candidate CPU s), runs alternating. CPU seconds (of every process of the command)
    are steadier than wall time on a machine that others share.

    ``cand`` may be ``FEEDER | CMD``: the feeder then writes CMD's stdin, and the RSS is CMD's
    own (the shell's would be measured otherwise)."""
    feeder, _, cand = cand.rpartition(" | ") if cand.startswith("gzip -dc") else ("", "", cand)
    b_times, c_times, b_cpu, c_cpu, peak = [], [], [], [], 0
    with tempfile.TemporaryFile() as err:
        for _ in range(repeat):
            start = _cpu()
            seconds, _, _ = h.run_timed(base, shell=True, stdout=subprocess.DEVNULL)
            b_times.append(seconds)
            b_cpu.append(_cpu() - start)
            feed = None
            if feeder:
                feed = subprocess.Popen(feeder, shell=True, stdout=subprocess.PIPE)
            start = _cpu()
            seconds, rss, rc = h.run_timed(
                "exec " + cand,
                shell=True,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=env,
                stdin=feed.stdout if feed else subprocess.DEVNULL,
                cwd=cwd,  # python -m puts the current directory first on the path
            )
            c_cpu.append(_cpu() - start)
            if feed:
                feed.stdout.close()
                feed.wait()
            if rc not in (0, 1):
                err.seek(0)
                tail = err.read().decode("utf-8", "replace").splitlines()[-5:]
                print(f"  candidate exited with {rc}: {' | '.join(tail)}", file=sys.stderr)
            c_times.append(seconds)
            peak = max(peak, rss)
    median = statistics.median
    return median(b_times), median(c_times), peak, median(b_cpu), median(c_cpu)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    h.add_export_args(ap)
    ap.add_argument("--repeat", type=int, default=3, help="paired runs per row (default 3)")
    ap.add_argument("--quick", action="store_true", help="20,000 events, one run per row")
    ap.add_argument("--big", type=int, default=0, help="also the 'big' row on N events")
    ap.add_argument("--rows", default="", help="comma-separated row names to run (default all)")
    ap.add_argument(
        "--config",
        default=os.path.join(h.REPO_ROOT, "config.example.yaml"),
        help="config for the candidate (default: <repo>/config.example.yaml)",
    )
    ap.add_argument(
        "--repo", default=h.REPO_ROOT, help="the code to run (PYTHONPATH; default: this tree)"
    )
    ap.add_argument(
        "--against",
        default="",
        help="another checkout measured in the same runs, each of its rows under this tree's "
        "(before and after a change, under the same load)",
    )
    args = ap.parse_args(argv)
    if args.quick:
        args.events, args.repeat = 20_000, 1

    export_dir, meta = h.ensure_export(args.events, seed=args.seed, files=args.files)
    files = h.list_gz_files(export_dir)
    config = os.path.abspath(args.config)
    q = shlex.quote
    gz = " ".join(q(f) for f in files)
    retently = f"{q(sys.executable)} -m retently_cli"
    base = f"gzip -dc {gz} | wc -l"
    work = tempfile.mkdtemp(prefix="bench-dryrun-")
    new_config = diff_config(config, work)

    rows = [
        ("ndjson", "send -n -o ndjson", base, f"{retently} send -n -o ndjson -c {q(config)} {gz}"),
        (
            "one",
            "send -n -o ndjson --jobs 1 (one process)",
            base,
            f"{retently} send -n -o ndjson --jobs 1 -c {q(config)} {gz}",
        ),
        ("table", "send -n (table)", base, f"{retently} send -n -c {q(config)} {gz}"),
        ("diff", "diff", base, f"{retently} diff {q(config)} {q(new_config)} {gz}"),
        ("coverage", "coverage", base, f"{retently} coverage -c {q(config)} {gz}"),
        (
            "stdin",
            "stdin (gzip -dc | send -n -)",
            base,
            f"gzip -dc {gz} | {retently} send -n -o ndjson -c {q(config)} -",
        ),
    ]
    wanted = set(filter(None, args.rows.split(",")))

    def want(name: str) -> bool:
        return not wanted or name in wanted

    if want("small"):
        folder = small_files(export_dir, files, SMALL_FILES)
        rows.append(
            (
                "small",
                f"{SMALL_FILES:,} small files",
                f"find {q(folder)} -name '*.gz' -print0 | sort -z | xargs -0 gzip -dc | wc -l",
                f"{retently} send -n -o ndjson -c {q(config)} {q(folder)}",
            )
        )
    if want("unique"):
        folder = unique_names(export_dir, files)
        unique = " ".join(q(f) for f in h.list_gz_files(folder))
        rows.append(
            (
                "unique",
                "every event a different name",
                f"gzip -dc {unique} | wc -l",
                f"{retently} send -n -o ndjson -c {q(config)} {unique}",
            )
        )
    if want("jq") and shutil.which("jq"):
        rows.append(
            ("jq", "zcat | jq -c 'select(...)'", base, f"gzip -dc {gz} | jq -c {q(JQ_FILTER)}")
        )
    if args.big and want("big"):
        big_dir, _ = h.ensure_export(args.big, seed=args.seed, files=args.files)
        big = " ".join(q(f) for f in h.list_gz_files(big_dir))
        rows.append(
            (
                "big",
                f"{args.big:,} events",
                f"gzip -dc {big} | wc -l",
                f"{retently} send -n -o ndjson -c {q(config)} {big}",
            )
        )

    print(
        f"export {os.path.relpath(export_dir, h.REPO_ROOT)}: {meta['events']:,} events in "
        f"{len(files)} files, {meta['uncompressed_bytes'] / h.MB:.1f} MB NDJSON; "
        f"{args.repeat} paired runs per row, medians; shared machines slow both sides alike"
    )
    print(
        f"{'run':<42}{'PYTHONUNBUFFERED':>17}{'base s':>8}{'cand s':>8}{'ratio':>7}"
        f"{'CPU ratio':>10}{'RSS MiB':>8}"
    )
    warm_cache(files)
    env_plain = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    repo = os.path.abspath(args.repo)
    outer_path = env_plain.get("PYTHONPATH", "")
    env_unbuf = dict(env_plain, PYTHONUNBUFFERED="1")
    trees = [("", repo)]
    if args.against:
        trees.append((" (against)", os.path.abspath(args.against)))
    for _, tree in trees:
        # Bytecode compiled ahead, as pip compiles an installed copy: otherwise, where
        # PYTHONDONTWRITEBYTECODE is set, every run (and every worker) compiles the modules
        # from source, about 50 ms more, and the figures would depend on that variable.
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", os.path.join(tree, "retently_cli")],
            check=False,
        )
    for name, label, base_cmd, cand_cmd in rows:
        if not want(name):
            continue
        variants = (
            [("set", env_unbuf), ("unset", env_plain)]
            if name in ("ndjson", "one", "table")
            else [("set", env_unbuf)]
        )
        for flag, env in variants:
            # jq is no tree's; --jobs is unknown to trees from before it
            for suffix, tree in trees if name not in ("jq", "one") else trees[:1]:
                tree_env = dict(env, PYTHONPATH=tree + os.pathsep + outer_path)
                b, c, rss, b_cpu, c_cpu = paired(args.repeat, base_cmd, cand_cmd, tree_env, tree)
                cpu_ratio = c_cpu / b_cpu if b_cpu else float("inf")
                ratio = c / b if b else float("inf")
                goal = GOALS.get(name, RATIO_GOAL)
                good = ratio <= goal and rss / 2**20 < RSS_GOAL_MB
                mark = "" if name == "jq" else f"  {'ok' if good else 'over'} (goal {goal}x)"
                print(
                    f"{label + suffix:<42}{flag:>17}{b:>8.2f}{c:>8.2f}{ratio:>6.2f}x"
                    f"{cpu_ratio:>9.2f}x{rss / 2**20:>8.0f}{mark}",
                    flush=True,
                )
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
