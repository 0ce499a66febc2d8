"""A dry-run of an export served by a real S3 API (moto's server on 127.0.0.1), against the
same files on disk. Needs the test extra (moto[server], s3fs).

    python benchmarks/bench_s3.py                        # 1,000,000 events, 10 files
    python benchmarks/bench_s3.py --events 200000 --repeat 1

Times, best of --repeat, with output to /dev/null:
  disk   retently send -n --no-ledger -o ndjson -c config.example.yaml EXPORT
  s3     the same on s3://BUCKET/segment-logs (the export uploaded to moto, in memory)
and prints their ratio and peak RSS. Always exits 0.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _harness import best_of, ensure_export, list_gz_files, peak_rss_mb  # noqa: E402

BUCKET = "retently-bench"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    export, _ = ensure_export(args.events)

    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = dict(
        os.environ,
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
    )
    client = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip
    client.create_bucket(Bucket=BUCKET)
    files = list_gz_files(export)
    for path in files:
        client.upload_file(path, BUCKET, os.path.relpath(path, export))
    size = sum(os.path.getsize(p) for p in files)
    print(f"uploaded {len(files)} objects, {size / 1e6:.1f} MB, to {endpoint}", file=sys.stderr)

    config = HERE.parent / "config.example.yaml"
    base = [sys.executable, "-m", "retently_cli", "send", "-n", "--no-ledger", "-o", "ndjson"]
    commands = {
        "disk": [*base, "-c", str(config), os.path.join(export, "segment-logs")],
        "s3": [*base, "-c", str(config), f"s3://{BUCKET}/segment-logs"],
    }
    results = {}
    try:
        for name, command in commands.items():
            print(f"$ {' '.join(command)} > /dev/null", file=sys.stderr)
            results[name] = best_of(
                args.repeat, command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
            )
    finally:
        server.stop()
    print()
    print(f"events {args.events:,} in {len(files)} gzipped files ({size / 1e6:.1f} MB)")
    print(f"{'':6} {'seconds':>8} {'events/s':>10} {'RSS MB':>8} {'exit':>5}  runs")
    for name, (seconds, rss, rc, times) in results.items():
        runs = ", ".join(f"{t:.2f}" for t in times)
        print(
            f"{name:6} {seconds:>8.2f} {args.events / seconds:>10,.0f} {peak_rss_mb(rss):>8.1f} "
            f"{rc:>5}  {runs}"
        )
    print(f"s3/disk time ratio {results['s3'][0] / results['disk'][0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
