"""Benchmark: the example conductor on local processes vs a Dask LocalCluster, in one run.

Copies the example project into a temporary directory and conducts its 3 x 3 scenario
grid with ``force=True`` (every build really runs) on 2 local worker processes and on a
Dask LocalCluster of 2 single-threaded worker processes, alternating, ``--repeat`` times
each. The Dask time is split into cluster start-up and the conduct call. Run by hand:

    python bench/executors.py [--repeat 2]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKERS = 2


def _copy_example(dest: Path) -> None:
    """The example project without runs/ (the installed ductaflow runs it)."""
    for name in ("flows", "builds", "config"):
        shutil.copytree(ROOT / name, dest / name)
    for name in ("conductor.py", "pyproject.toml"):
        shutil.copy(ROOT / name, dest / name)


def _conduct(work: Path, executor: object) -> float:
    """Wall time of one forced conduct of the example grid; checks the lights are right."""
    from ductaflow import conduct, expand_grid

    grid = expand_grid(growth_rate=[0.01, 0.02, 0.04], cost_sensitivity=[0.05, 0.1, 0.2])
    t0 = time.perf_counter()
    out = conduct(
        grid,
        work / "builds" / "demand_model.py",
        executor=executor,
        max_parallel=WORKERS,
        force=True,
        progress=False,
        raise_on_failure=False,
    )
    elapsed = time.perf_counter() - t0
    lights = out["status"].value_counts().to_dict()
    if lights != {"green": 6, "orange": 3}:
        sys.exit(f"unexpected lights {lights}: the benchmark is not measuring the example")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2, help="forced conducts per executor (median reported)")
    args = parser.parse_args()
    from distributed import Client, LocalCluster

    logging.getLogger("distributed").setLevel(logging.ERROR)
    local: list[float] = []
    dask: list[float] = []
    start: list[float] = []
    with tempfile.TemporaryDirectory(prefix="ductaflow-bench-exec-") as tmp:
        work = Path(tmp)
        _copy_example(work)
        load_before = os.getloadavg()
        for _ in range(args.repeat):
            local.append(_conduct(work, "local"))
            t0 = time.perf_counter()
            cluster = LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True, memory_limit=0)
            client = Client(cluster)
            start.append(time.perf_counter() - t0)
            try:
                dask.append(_conduct(work, client))
            finally:
                client.close()
                cluster.close()
        load_after = os.getloadavg()
    med_local, med_dask, med_start = statistics.median(local), statistics.median(dask), statistics.median(start)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min)")
    print(f"example conductor, 9 scenarios x (build + 3 flows), forced, {WORKERS} workers, {args.repeat} run(s) each")
    print(f"  local processes:        {med_local:7.2f} s  (min {min(local):.2f}, max {max(local):.2f})")
    print(f"  Dask LocalCluster:      {med_dask:7.2f} s  (min {min(dask):.2f}, max {max(dask):.2f})")
    print(f"  Dask cluster start-up:  {med_start:7.2f} s  (not included above)")
    print(f"  Dask / local:           {med_dask / med_local:7.2f}x")


if __name__ == "__main__":
    main()
