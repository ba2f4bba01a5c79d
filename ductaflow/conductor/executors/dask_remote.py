"""What the conductor's Dask backend runs on the workers: plain functions, plain data back.

Each build task is wrapped in :func:`run_on_worker`, which first proves (one small file
read) that this worker sees the runs root the conductor writes: a worker that joined late,
on a node without the shared filesystem, answers :class:`Unshared` instead of running the
build into its own disk. Nothing here raises to the worker, and nothing imports Dask at the
top: this module is also imported by the conductor.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ductaflow._version import __version__
from ductaflow.conductor.tasks import SHARED_FILESYSTEM, BuildOutcome

#: The token file the conductor writes in its probe folder for the sweep's duration.
TOKEN_NAME = "coordinator"


@dataclass(frozen=True)
class Probe:
    """Where the conductor left its token for this sweep, and what it holds."""

    folder: str
    token: str

    def problem(self) -> str | None:
        """Why this process does not see the conductor's runs root, or None when it does."""
        path = Path(self.folder) / TOKEN_NAME
        try:
            seen = path.read_text(encoding="utf-8")
        except OSError as exc:
            return f"cannot read {path} ({exc.strerror or exc})"
        return None if seen == self.token else f"{path} holds another token: a different filesystem at that path"


@dataclass(frozen=True)
class Unshared:
    """A worker's answer instead of a build: it cannot see the runs root."""

    worker: str  # its Dask address
    where: str  # host:pid
    problem: str
    kind: str = SHARED_FILESYSTEM  # or "worker_setup": ductaflow cannot be imported there


def worker_name() -> tuple[str, str]:
    """This worker's Dask address and ``host:pid`` (the address is unknown outside a Dask worker)."""
    where = f"{socket.gethostname()}:{os.getpid()}"
    try:
        from distributed import get_worker  # deferred: heavy, and only meaningful on a Dask worker

        return str(get_worker().address), where
    except (ImportError, ValueError):
        return where, where


def run_on_worker(fn: Any, task: Any, probe: Probe | None) -> Any:
    """Run ``fn(task)`` on this worker once it has shown it sees the runs root; a build's
    outcome names the worker by its Dask address and host."""
    address, where = worker_name()
    problem = probe.problem() if probe is not None else None
    if problem is not None:
        return Unshared(address, where, problem)
    out = fn(task)
    if isinstance(out, BuildOutcome):
        out = replace(out, worker=f"{address} ({where})" if address != where else where)
    return out


def probe_worker(folder: str, token: str, inputs: list[str]) -> dict[str, Any]:
    """The start-up check on one worker: it reads the conductor's token, sees the flows, and
    writes a file back; plain data back, never raises (``__version__`` is the worker's own)."""
    answer: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid(), "ductaflow": __version__}
    problem = Probe(folder, token).problem()
    if problem is not None:
        return {**answer, "problem": problem}
    missing = [p for p in inputs if not Path(p).is_file()]
    if missing:
        return {**answer, "problem": f"cannot see {', '.join(missing)}"}
    name = f"worker-{answer['host']}-{answer['pid']}-{uuid.uuid4().hex[:6]}"
    try:
        (Path(folder) / name).write_text(token, encoding="utf-8")
    except OSError as exc:
        return {**answer, "problem": f"cannot write in {folder} ({exc.strerror or exc})"}
    return {**answer, "wrote": name}


def stop_on_worker(instance_dirs: list[str]) -> int:
    """Worker side of Ctrl-C: interrupt this worker's builds in ``instance_dirs`` (non-blocking)."""
    from ductaflow.kernels.engine import stop_kernels  # deferred: heavy, needed only on a Ctrl-C

    return stop_kernels(instance_dirs)
