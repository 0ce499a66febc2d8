#!/usr/bin/env python3
"""Benchmark `retently send` (real delivery) against the fake Retently server on 127.0.0.1.

throughput: N matched Track events (gzipped NDJSON) sent with batch_size 100, rate_limit 100000,
  concurrency 4 to a fake server without a rate limit. Prints events/s, requests, the surveys
  the server recorded (each (campaign, email, messageId) must arrive exactly once), 429s and the
  exit code, and times a --dry-run of the same input as a baseline.
rate: batch_size 1 (one request per event) with rate_limit R against a fake server enforcing
  R requests per window; events are fed on stdin by a thread and the CLI is stopped with SIGINT
  after --seconds (exit 130 is expected). Goals: achieved rate >= 95% of R, zero 429s, and no
  sliding window holding more than the server's limit.  It reports; it always exits 0.

Examples:
    python benchmarks/bench_delivery.py                      # 100,000 events; 60 s at 600/min
    python benchmarks/bench_delivery.py --quick              # 5,000 events; 10 s at 120/min
    python benchmarks/bench_delivery.py --scenario rate --seconds 150
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness as h  # noqa: E402

from retently_cli.fake_server import DEFAULT_CAMPAIGNS, FakeRetently  # noqa: E402

API_KEY = "bench-key"  # the fake server's key: not a secret
NAMES = ("Order Completed", "Support Ticket Closed", "Onboarding Finished")
CAMPAIGN_OF = {name: c["id"] for name, c in zip(NAMES, DEFAULT_CAMPAIGNS, strict=False)}
SURVEY_PATH = "/api/v2/survey"
RATE_GOAL = 0.95


def event(i: int) -> dict:
    """Track event i: unique messageId; email user{i}, except every 50th reuses user{i-3}
    (same event name, so the same campaign legitimately surveys that email twice)."""
    email = f"user{i - 3 if i % 50 == 49 else i}@example.com"
    msg = f"bench-{i:07d}"
    props = {"email": email, "firstName": "User", "plan": "pro", "amount": i % 500, "ref": msg}
    return {
        "type": "track",
        "event": NAMES[i % 3],
        "messageId": msg,
        "userId": f"u{i}",
        "timestamp": "2025-11-20T10:00:00.000Z",
        "properties": props,
    }


def write_config(tmp: str, batch_size: int, rate_limit: int) -> str:
    path = os.path.join(tmp, f"config-b{batch_size}-r{rate_limit}.yaml")
    with open(path, "w", encoding="utf-8") as f:
        f.write("campaigns:\n")
        for name, cid in CAMPAIGN_OF.items():
            f.write(f"  {json.dumps(cid)}: {json.dumps(name)}\n")
        f.write(f"batch_size: {batch_size}\nrate_limit: {rate_limit}\nconcurrency: 4\n")
    return path


def child_env(srv: FakeRetently) -> dict:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.pop("RETENTLY_CONFIG", None)
    env.update(RETENTLY_API_KEY=API_KEY, RETENTLY_BASE_URL=srv.url, NO_PROXY="127.0.0.1")
    # A fresh ledger per server (each run is a first run), never the user's data directory.
    env["RETENTLY_LEDGER"] = os.path.join(tempfile.gettempdir(), f"bench-ledger-{srv.port}.sqlite3")
    return env


def cli(config: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "retently_cli", "send", "-c", config, "--output", "ndjson", *args]


def show_cmd(cmd: list[str], env: dict | None, stdout: str, stdin: str = "") -> None:
    prefix = (
        f"RETENTLY_API_KEY={API_KEY} RETENTLY_BASE_URL={env['RETENTLY_BASE_URL']} " if env else ""
    )
    print(f"$ {stdin}{prefix}{shlex.join(cmd)} > {stdout}", flush=True)


def expected_surveys(n: int) -> Counter:
    """(campaign, email, messageId) of the surveys events 0..n-1 ask for: one each."""
    return Counter(
        (CAMPAIGN_OF[e["event"]], e["properties"]["email"], e["messageId"])
        for e in map(event, range(n))
    )


def outcomes(path: str) -> Counter:
    with open(path, "rb") as f:
        return Counter((r["outcome"], r.get("reason")) for r in map(json.loads, f))


def fmt_counts(c: Counter) -> str:
    return ", ".join(
        f"{k if not isinstance(k, tuple) else '/'.join(filter(None, k))}: {n:,}"
        for k, n in sorted(c.items(), key=str)
    )


def survey_checks(srv: FakeRetently, expected: Counter) -> tuple[int, int, int, int]:
    """(surveys recorded, duplicate (campaign, email, messageId) deliveries, surveys to a
    (campaign, email) beyond what the input asks for, expected surveys missing)."""
    got = Counter()
    for s in srv.surveys:
        props = s["subscriber"].get("properties", ())
        ref = next((p["value"] for p in props if p["label"] == "ref"), None)
        got[(s["campaign"], s["email"], ref)] += 1
    dups = sum(n - 1 for n in got.values() if n > 1)
    pairs, want = Counter(), Counter()
    for counter, total in ((got, pairs), (expected, want)):
        for key, n in counter.items():
            total[key[:2]] += n
    extra = sum((pairs - want).values())
    return sum(got.values()), dups, extra, sum((expected - got).values())


def line(label: str, value: str, ok: bool | None = None) -> None:
    print(f"{label:<28}{value}" + ("" if ok is None else f"  {'PASS' if ok else 'FAIL'}"))


def stderr_tail(path: str) -> None:
    with open(path, encoding="utf-8", errors="replace") as f:
        print("  stderr tail:\n    " + "\n    ".join(f.read().splitlines()[-12:]))


def throughput(n: int, tmp: str) -> None:
    print(f"\n== throughput: {n:,} events, batch_size 100, rate_limit 100000, concurrency 4 ==")
    data = os.path.join(tmp, "events.ndjson.gz")
    with gzip.open(data, "wt", encoding="utf-8", compresslevel=6) as f:
        f.writelines(json.dumps(event(i), separators=(",", ":")) + "\n" for i in range(n))
    config = write_config(tmp, 100, 100_000)
    dry_out, send_out = os.path.join(tmp, "dryrun.ndjson"), os.path.join(tmp, "send.ndjson")
    err_path = os.path.join(tmp, "send.stderr")

    dry_cmd = cli(config, "--dry-run", data)
    show_cmd(dry_cmd, None, dry_out)
    with open(dry_out, "wb") as out:
        d_secs, d_rss, d_rc = h.run_timed(dry_cmd, stdout=out, stderr=subprocess.DEVNULL)
    d_out = outcomes(dry_out)

    with FakeRetently(api_key=API_KEY, rate_limit_per_minute=None) as srv:
        env, send_cmd = child_env(srv), cli(config, data)
        show_cmd(send_cmd, env, send_out)
        with open(send_out, "wb") as out, open(err_path, "wb") as err:
            s_secs, s_rss, s_rc = h.run_timed(send_cmd, stdout=out, stderr=err, env=env)
        posts = [r for r in srv.requests if r[0] == "POST" and r[1] == SURVEY_PATH]
        recorded, dups, extra, missing = survey_checks(srv, expected_surveys(n))
        limited = srv.rate_limited
    s_out = outcomes(send_out)
    matched, sent = d_out[("dry_run", None)], s_out[("sent", None)]

    print(f"\n{'':<22}{'dry-run':>12}{'send':>12}")
    for name, a, b in (
        ("seconds", f"{d_secs:.2f}", f"{s_secs:.2f}"),
        ("events/s", f"{n / d_secs:,.0f}", f"{n / s_secs:,.0f}"),
        ("surveys delivered/s", "-", f"{recorded / s_secs:,.0f}"),
        ("peak RSS MB", f"{d_rss / h.MB:.1f}", f"{s_rss / h.MB:.1f}"),
        ("exit code", str(d_rc), str(s_rc)),
    ):
        print(f"{name:<22}{a:>12}{b:>12}")
    print()
    line("ratio send/dry-run", f"{s_secs / d_secs:.2f}  (no goal; informative)")
    line("dry-run outcomes", fmt_counts(d_out))
    line("send outcomes", fmt_counts(s_out))
    line(
        "POST requests",
        f"{len(posts):,}  (statuses {fmt_counts(Counter(r[2] for r in posts))}; "
        f"{recorded / max(1, len(posts)):.1f} subscribers/request)",
    )
    line(
        "surveys recorded by server",
        f"{recorded:,}  (matched decisions {matched:,}, events {n:,})",
        recorded == matched == n,
    )
    line(
        "duplicate deliveries",
        f"{dups:,} (campaign, email, messageId) twice; {extra:,} (campaign, email) extra",
        dups == extra == 0,
    )
    line("expected surveys missing", f"{missing:,}", missing == 0)
    line("'sent' records", f"{sent:,} (recorded {recorded:,})", sent == recorded)
    line("429s", f"{limited:,}", limited == 0)
    line("exit code", f"{s_rc}  (goal 0)", s_rc == 0)
    if s_rc != 0:
        stderr_tail(err_path)


def feed(pipe, stop: threading.Event, fed: list[int]) -> None:
    """Write events to the CLI's stdin until told to stop or the CLI goes away."""
    try:
        while not stop.is_set():
            i = fed[0]
            pipe.write("".join(json.dumps(event(i + k)) + "\n" for k in range(20)).encode())
            pipe.flush()
            fed[0] = i + 20
    except (OSError, ValueError):  # BrokenPipeError once the CLI has exited
        pass
    finally:
        try:
            pipe.close()
        except OSError:
            pass


def max_in_window(times: list[float], window: float) -> int:
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def rate(rate_limit: int, seconds: float, window: float, tmp: str) -> None:
    per_window = round(rate_limit * window / 60)
    print(
        f"\n== rate: rate_limit {rate_limit}/min, batch_size 1, {seconds:g} s; the server allows "
        f"{per_window} per {window:g} s sliding window =="
    )
    config, cmd = write_config(tmp, 1, rate_limit), None
    out_path, err_path = os.path.join(tmp, "rate.ndjson"), os.path.join(tmp, "rate.stderr")
    with FakeRetently(
        api_key=API_KEY, rate_limit_per_minute=per_window, window_seconds=window
    ) as srv:
        env, cmd = child_env(srv), cli(config, "-")
        show_cmd(cmd, env, out_path, stdin="(generator thread) | ")
        print(f"  ... then SIGINT after {seconds:g} s", flush=True)
        stop, fed = threading.Event(), [0]
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            t0 = time.monotonic()
            # A shell's background job inherits SIGINT ignored: give the CLI its Ctrl-C back.
            proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=out, stderr=err, env=env,
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
            )  # fmt: skip
            feeder = threading.Thread(target=feed, args=(proc.stdin, stop, fed), daemon=True)
            feeder.start()
            while time.monotonic() - t0 < seconds and proc.poll() is None:
                time.sleep(0.05)
            t_sig = time.monotonic()
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            try:
                rc = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = f"{proc.wait()} (killed: still running 60 s after SIGINT)"
            t_end = time.monotonic()
            stop.set()
            feeder.join(5)
        posts = [r for r in srv.requests if r[0] == "POST" and r[1] == SURVEY_PATH]
        accepted = sorted(r[3] for r in posts if r[2] == 200)
        limited = srv.rate_limited
        recorded, dups, extra, _ = survey_checks(srv, expected_surveys(fed[0]))
    out_counts = outcomes(out_path)

    span = accepted[-1] - accepted[0] if len(accepted) > 1 else 0.0
    per_min = (len(accepted) - 1) / span * 60 if span else 0.0
    frac, peak = per_min / rate_limit, max_in_window(accepted, window)
    print()
    line(
        "run",
        f"{t_end - t0:.1f} s (SIGINT at {t_sig - t0:.1f} s, exited {t_end - t_sig:.2f} s "
        f"later), exit code {rc} (130 expected)",
    )
    line("events fed on stdin", f"{fed[0]:,}")
    line("POST requests", f"{len(posts):,}  (statuses {fmt_counts(Counter(r[2] for r in posts))})")
    if accepted:
        line(
            "first / last accepted POST",
            f"{accepted[0] - t0:.2f} s / {accepted[-1] - t0:.2f} s after start "
            f"({span:.1f} s steady)",
        )
    line("outcomes", fmt_counts(out_counts))
    line(
        "surveys recorded",
        f"{recorded:,} ('sent' records {out_counts[('sent', None)]:,}); duplicates {dups:,}, "
        f"extra (campaign, email) {extra:,}",
        dups == extra == 0 and recorded == out_counts[("sent", None)],
    )
    print()
    line(
        "achieved rate",
        f"{per_min:.1f} req/min = {frac:.3f} of {rate_limit}  (goal >= {RATE_GOAL})",
        frac >= RATE_GOAL,
    )
    line("429s (rate_limited)", f"{limited:,}  (goal 0)", limited == 0)
    line(f"max in any {window:g} s window", f"{peak:,}  (goal <= {per_window})", peak <= per_window)
    line(
        "rate scenario",
        f"achieved >= {RATE_GOAL:.0%} of the limit and zero 429s",
        frac >= RATE_GOAL and limited == 0,
    )
    if rc != 130:
        stderr_tail(err_path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    ap.add_argument("--scenario", choices=("throughput", "rate", "both"), default="both")
    ap.add_argument("--events", type=int, help="throughput events (default 100000; quick 5000)")
    ap.add_argument("--seconds", type=float, help="rate run length (default 60; quick 10)")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes: 5000 events; a 10 s rate run at 120/min, 5 s windows",
    )
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (inputs, outputs)")
    args = ap.parse_args(argv)
    events = args.events or (5_000 if args.quick else 100_000)
    seconds = args.seconds or (10.0 if args.quick else 60.0)
    # --quick scales the window with the run (limit 120/min = 10 per 5 s) so that the run spans
    # two windows and the sliding-window check still means something.
    rate_limit, window = (120, 5.0) if args.quick else (600, 60.0)

    tmp = tempfile.mkdtemp(prefix="bench-delivery-")
    try:
        if args.scenario in ("throughput", "both"):
            throughput(events, tmp)
        if args.scenario in ("rate", "both"):
            rate(rate_limit, seconds, window, tmp)
    finally:
        if args.keep:
            print(f"\ninputs and outputs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
