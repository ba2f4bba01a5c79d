"""Shared pieces of the benchmark suite: the flows it runs, temporary projects, child
processes, statistics, load averages and the machine description.

Every measurement that runs kernels happens in a fresh child process (``workloads.py``)
tagged with an environment variable, so whatever it leaves behind can be found and killed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
#: Set in every child (and so in every kernel it starts): how leftovers are recognised.
TAG_ENV = "DUCTAFLOW_BENCH_TAG"
TAG = uuid.uuid4().hex
RESULT_PREFIX = "BENCH-RESULT "

TRIVIAL_FLOW = """# %% tags=["parameters"]
config = {"i": 0}

# %%
print("flow", config.get("i", 0))

# %%
print("second cell")

# %%
print("third cell")
"""

PANDAS_FLOW = """# %% tags=["parameters"]
config = {"i": 0}

# %%
import numpy as np
import pandas as pd

print("numpy", np.__version__, "pandas", pd.__version__)

# %%
frame = pd.DataFrame({"x": np.arange(100) * config.get("i", 0)})
print("sum", int(frame["x"].sum()))

# %%
print("rows", len(frame))
"""

#: A build that runs the trivial flow once as a step (for the conductor's RSS benchmark).
STEP_BUILD = """# %% tags=["parameters"]
config = {}

# %%
from ductaflow import step

result = step("flows/trivial.py", "trivial", {"i": config.get("i", 0)})
print(result.status)
"""

FLOWS = {"trivial": TRIVIAL_FLOW, "pandas_numpy": PANDAS_FLOW}


# ---------------------------------------------------------------- statistics
@dataclass
class Row:
    """One line of the results table: samples of one measurement and how to compare it."""

    key: str
    group: str
    label: str
    unit: str
    samples: list[float] = field(default_factory=list)
    ref: str | None = None  # key of the row this one is compared with
    note: str = ""
    percent: bool = False  # show the ratio to ``ref`` as a percentage

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")


@dataclass
class Section:
    """A benchmark group as run: its rows, the load average around it, and its wall time."""

    name: str
    title: str
    rows: list[Row] = field(default_factory=list)
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


@contextmanager
def measured_section(section: Section) -> Iterator[Section]:
    """Record the load average before and after a benchmark group, and how long it took."""
    section.load_before = os.getloadavg()
    t0 = time.perf_counter()
    try:
        yield section
    finally:
        section.seconds = time.perf_counter() - t0
        section.load_after = os.getloadavg()
        leftovers = kill_leftovers()
        if leftovers:
            section.notes.append(f"killed {leftovers} process(es) left behind by this benchmark")


# ---------------------------------------------------------------- processes
def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child: ours, tagged, with UTF-8 output and no colour."""
    return {**os.environ, TAG_ENV: TAG, "PYTHONIOENCODING": "utf-8", "NO_COLOR": "1", **extra}


def run_child(workload: str, args: dict[str, Any], timeout: float = 1800) -> dict[str, Any]:
    """Run one workload of ``workloads.py`` in a fresh interpreter and return its JSON result."""
    cmd = [sys.executable, str(BENCH / "workloads.py"), workload, json.dumps(args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=child_env(), cwd=args.get("cwd"))
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    tail = "\n".join((proc.stderr or proc.stdout).splitlines()[-30:])
    raise RuntimeError(f"workload {workload} failed (exit {proc.returncode}):\n{tail}")


def wall(cmd: Sequence[str], cwd: Path, timeout: float = 600) -> float:
    """Wall-clock seconds of one command run to completion (output captured, must succeed)."""
    t0 = time.perf_counter()
    proc = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, timeout=timeout, env=child_env())
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).splitlines()[-20:])
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{tail}")
    return elapsed


def kill_leftovers() -> int:
    """Kill processes (kernels, workers) still carrying this run's tag; returns how many."""
    import psutil

    me = os.getpid()
    found = []
    for proc in psutil.process_iter(["pid"]):
        if proc.info["pid"] == me:
            continue
        try:
            if proc.environ().get(TAG_ENV) == TAG:
                found.append(proc)
        except psutil.Error:
            continue
    for proc in found:
        try:
            proc.kill()
        except psutil.Error:
            pass
    return len(found)


# ---------------------------------------------------------------- temporary projects
@contextmanager
def temp_dir(prefix: str, memory: bool = False) -> Iterator[Path]:
    """A temporary directory removed afterwards, whatever happens; ``memory`` puts it on
    tmpfs (``/dev/shm``) when there is one, where writing 100,000s of small files is fast."""
    shm = Path("/dev/shm")
    base = str(shm) if memory and shm.is_dir() and os.access(shm, os.W_OK) else None
    path = Path(tempfile.mkdtemp(prefix=f"ductaflow-bench-{prefix}-", dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def make_project(base: Path) -> Path:
    """A minimal project (marker file, ``flows/`` with the benchmark flows, a step build)."""
    root = base / "proj"
    (root / "flows").mkdir(parents=True)
    (root / "builds").mkdir()
    (root / "pyproject.toml").write_text("", encoding="utf-8")
    for name, source in FLOWS.items():
        (root / "flows" / f"{name}.py").write_text(source, encoding="utf-8")
    (root / "builds" / "step_build.py").write_text(STEP_BUILD, encoding="utf-8")
    return root


def to_ipynb(flow: Path) -> Path:
    """Convert a flow with the jupytext CLI, as a papermill user does (python3 kernelspec)."""
    out = flow.with_suffix(".ipynb")
    cmd = [str(BIN / "jupytext"), "--to", "ipynb", "--set-kernel", "python3", "-o", str(out), str(flow)]
    subprocess.run(cmd, check=True, capture_output=True, env=child_env())
    return out


def copy_example(dest: Path) -> Path:
    """A copy of the example project (flows, builds, config, conductor.py) in ``dest``."""
    for name in ("flows", "builds", "config"):
        shutil.copytree(ROOT / name, dest / name)
    for name in ("conductor.py", "pyproject.toml"):
        shutil.copy(ROOT / name, dest / name)
    return dest


# ---------------------------------------------------------------- the machine
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return None


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _bytecode() -> str:
    """Whether the ductaflow under test runs from cached bytecode. Without it (an editable checkout
    with PYTHONDONTWRITEBYTECODE=1 never writes .pyc files) every process compiles ductaflow's
    source again: part of every `ductaflow run`, conductor worker and kernel that imports it."""
    import ductaflow  # the copy the children will import (same interpreter and PYTHONPATH)

    init = ductaflow.__file__ or ""
    cached = bool(init) and os.path.exists(importlib.util.cache_from_source(init))
    flag = "PYTHONDONTWRITEBYTECODE=1" if os.environ.get("PYTHONDONTWRITEBYTECODE") else "writes allowed"
    return f"{'cached' if cached else 'not cached: compiled in every process'} ({flag}) for {os.path.dirname(init)}"


def machine() -> dict[str, Any]:
    """What the figures were measured on: CPU, RAM, Python, package versions, date, commit."""
    versions = {}
    for pkg in ("ductaflow", "papermill", "nbclient", "jupyter_client", "ipykernel", "jupytext", "pandas", "numpy"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    ram = _ram_gib()
    return {
        "cpu": f"{os.cpu_count()} x {_cpu_model()} ({platform.machine()})",
        "ram": f"{ram:.1f} GiB" if ram else "unknown",
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_version()} ({platform.python_implementation()})",
        "bytecode": _bytecode(),
        "versions": versions,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _git_commit(),
    }


def fmt_load(load: Sequence[float]) -> str:
    """A load average triple as ``1.23 / 0.98 / 0.75``."""
    return " / ".join(f"{v:.2f}" for v in load)
