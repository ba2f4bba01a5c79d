"""Benchmark: the example conductor's no-op re-run as a fraction of its first run.

Copies the example project (flows/, builds/, config/, conductor.py) into a temporary
directory, runs ``python conductor.py`` there once from scratch and then ``--repeat``
times again with nothing changed, and prints wall times. Run by hand:

    python bench/rerun.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _timed(cwd: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "conductor.py"], cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="no-op re-runs to time (median reported)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ductaflow-bench-") as tmp:
        work = Path(tmp)
        for name in ("flows", "builds", "config"):
            shutil.copytree(ROOT / name, work / name)
        for name in ("conductor.py", "pyproject.toml"):
            shutil.copy(ROOT / name, work / name)
        first = _timed(work)
        noop = [_timed(work) for _ in range(args.repeat)]
    med = statistics.median(noop)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print("example conductor, 9 scenarios x (build + 3 flows)")
    print(f"  first run:          {first:7.2f} s")
    print(f"  no-op re-run:       {med:7.2f} s  (median of {len(noop)}; min {min(noop):.2f}, max {max(noop):.2f})")
    print(f"  re-run / first run: {med / first:7.1%}")


if __name__ == "__main__":
    main()
