"""Benchmark: what recording a run's provenance costs (``ductaflow.core.provenance.collect``).

Measures, in fresh processes, the first ``collect()`` (lists the installed distributions)
and then ``--repeat`` warm calls (git asked again, the distribution list reused), in a
clean and a dirty git checkout of a copy of the example project and outside any checkout.
Run by hand:

    python bench/provenance.py [--repeat 50]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_PROBE = """
import json, statistics, sys, time
t0 = time.perf_counter()
from ductaflow.core.provenance import collect
imported = time.perf_counter() - t0
t0 = time.perf_counter(); collect(sys.argv[1]); cold = time.perf_counter() - t0
warm = []
for _ in range(int(sys.argv[2])):
    t0 = time.perf_counter(); collect(sys.argv[1]); warm.append(time.perf_counter() - t0)
print(json.dumps({"import": imported, "cold": cold, "warm": statistics.median(warm), "warm_max": max(warm)}))
"""


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=b", "-c", "user.email=b@example.org", *args],
                   check=True, capture_output=True)  # fmt: skip


def _copy_example(dest: Path) -> None:
    for part in ("flows", "builds", "config"):
        shutil.copytree(ROOT / part, dest / part)
    for name in ("pyproject.toml", "conductor.py"):
        shutil.copy2(ROOT / name, dest / name)


def _probe(where: Path, repeat: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", _PROBE, str(where), str(repeat)], check=True, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        repo, plain = Path(tmp) / "repo", Path(tmp) / "plain"
        repo.mkdir()
        plain.mkdir()
        _copy_example(repo)
        _git(repo, "init", "-q")
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", "example")
        cases = [("clean checkout", repo), ("dirty checkout", repo), ("no checkout", plain)]
        print("| case | first call (ms) | warm call, median (ms) | warm call, max (ms) |")
        print("|---|---:|---:|---:|")
        for label, where in cases:
            if label == "dirty checkout":
                with (repo / "flows" / "summarize.py").open("a") as fh:
                    fh.write("\n# edited\n")
            r = _probe(where, args.repeat)
            print(f"| {label} | {r['cold'] * 1000:.1f} | {r['warm'] * 1000:.1f} | {r['warm_max'] * 1000:.1f} |")


if __name__ == "__main__":
    main()
