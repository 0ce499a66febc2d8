"""parse_tags on a comma-separated string of N distinct tags: the time must grow linearly.

    python benchmarks/bench_tags.py                 # 10k, 80k and 640k tags
    python benchmarks/bench_tags.py 10000 20000     # other sizes

Prints the time for each size, and the growth per doubling of N between consecutive sizes:
about 2.0 is linear, 4.0 quadratic. Always exits 0.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from retently_cli.subscriber import parse_tags  # noqa: E402


def seconds(count: int) -> float:
    text = ", ".join(f"tag-{i}" for i in range(count))
    start = time.perf_counter()
    tags = parse_tags(text)
    elapsed = time.perf_counter() - start
    assert len(tags) == count
    return elapsed


def main(argv: list[str]) -> int:
    sizes = [int(arg) for arg in argv] or [10_000, 80_000, 640_000]
    previous = None
    for count in sizes:
        took = seconds(count)
        line = f"{count:>9,} tags  {took:9.4f} s"
        if previous is not None and took > 0 and previous[1] > 0:
            doublings = math.log2(count / previous[0])
            line += f"  x{(took / previous[1]) ** (1 / doublings):.2f} per doubling"
        print(line, flush=True)
        previous = (count, took)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
