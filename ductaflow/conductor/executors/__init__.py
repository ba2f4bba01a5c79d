"""Where builds run: one small interface over local processes, this process, or Dask.

The conductor has one scheduling loop over ``concurrent.futures`` futures. A
:class:`Backend` wraps the pool that produces them and adds what the loop needs beyond
``submit``: how many builds to keep in flight, how to stop running builds on Ctrl-C, a
check that workers see the runs root, and a clean shutdown.

``executor`` may be a name (``"local"``, ``"serial"``, ``"dask"``, ``"slurm"``: an adaptive
``dask_jobqueue.SLURMCluster`` set up from ``[tool.ductaflow.cluster]``), a Dask scheduler
address (``"tcp://host:8786"``), any ``concurrent.futures.Executor`` or a
``distributed.Client``.
"""

from __future__ import annotations

from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from ductaflow.conductor.executors.base import Backend, ExecutorBackend
from ductaflow.conductor.executors.local import LocalBackend, SerialBackend
from ductaflow.errors import DuctaflowError

__all__ = ["Backend", "ExecutorBackend", "LocalBackend", "SerialBackend", "make_backend", "NAMES"]

NAMES = ("local", "serial", "dask", "slurm")


def _is_dask_client(obj: Any) -> bool:
    """Duck-typed, so that distributed is only imported when it is used."""
    return type(obj).__module__.startswith("distributed") and hasattr(obj, "scheduler_info")


def make_backend(
    spec: str | Executor | Any | None,
    max_workers: int | None,
    *,
    project_root: Path | None = None,
    worker_wait: float | None = None,
) -> Backend:
    """Resolve ``spec`` to a Backend; ``max_workers`` (None: the machine's or cluster's size)
    caps how many builds run at once. ``project_root`` is where a cluster's settings are read
    from (``[tool.ductaflow.cluster]``); ``worker_wait`` how long a cluster may have no worker."""
    if spec is None or spec == "local":
        return LocalBackend(max_workers)
    if spec == "serial":
        return SerialBackend()
    if spec == "slurm":
        # deferred: builds a SLURMCluster (dask_jobqueue is heavy and optional)
        from ductaflow.conductor.executors.slurm import SlurmBackend

        return SlurmBackend.start(max_workers, project_root=project_root, worker_wait=worker_wait)
    if isinstance(spec, str) and (spec == "dask" or "://" in spec):
        from ductaflow.conductor.executors.dask import DaskBackend  # deferred: Dask is heavy and optional

        return DaskBackend.create(None if spec == "dask" else spec, max_workers, worker_wait=worker_wait)
    if _is_dask_client(spec):
        from ductaflow.conductor.executors.dask import DaskBackend  # deferred: Dask is heavy and optional

        return DaskBackend(spec, max_workers, owned=False, worker_wait=worker_wait)
    if isinstance(spec, Executor):
        return ExecutorBackend(spec, max_workers)
    if isinstance(spec, str):
        raise DuctaflowError(
            f"unknown executor '{spec}'; use one of {', '.join(NAMES)}, a Dask scheduler address "
            "(tcp://host:8786), a concurrent.futures.Executor or a distributed.Client"
        )
    raise DuctaflowError(
        f"executor must be a name, a concurrent.futures.Executor or a distributed.Client, got {type(spec).__name__}"
    )
