"""Builds on Dask distributed: a LocalCluster, an existing scheduler, or any Client
(``dask_jobqueue.SLURMCluster`` and friends included).

The task shipped to a worker is the conductor's thin build wrapper; every flow still
runs in its own kernel, launched by the worker with ``subprocess`` (never
``multiprocessing``: Dask worker processes are daemonic). Submissions are never
deduplicated (``pure=False`` and a unique key), so re-running a scenario runs it.
Workers must see the runs root at the same path as this process; :meth:`check_shared`
proves it before the first build starts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from ductaflow._version import __version__
from ductaflow.conductor.executors.base import Backend, terminal_interrupt_ignored
from ductaflow.errors import DuctaflowError, MissingExtra, SharedFilesystemError
from ductaflow.store.layout import PROBE_DIR

log = logging.getLogger(__name__)

#: How long to wait for a first worker when the cluster has none yet (e.g. SLURM jobs queued).
WAIT_FOR_WORKERS_S = 300.0


def _distributed() -> Any:
    try:
        import distributed  # deferred: heavy, and only installed with the dask extra
    except ImportError:
        raise MissingExtra("the dask executor", "dask", "distributed") from None
    return distributed


class DaskBackend(Backend):
    """Builds as Dask tasks, relayed to ``concurrent.futures`` futures for the conductor."""

    name = "dask"

    def __init__(
        self,
        client: Any,
        max_workers: int | None,
        *,
        owned: bool = False,
        cluster: Any = None,
        worker_wait: float | None = None,
    ) -> None:
        self.client = client
        self.worker_wait = WAIT_FOR_WORKERS_S if worker_wait is None else float(worker_wait)
        self.cluster = cluster
        self.owned = owned
        self._tasks: dict[Future[Any], Any] = {}  # keeps each Dask future alive until shutdown
        threads = sum(client.nthreads().values())
        if not threads and not max_workers:
            log.info("waiting up to %.0fs for a first Dask worker", WAIT_FOR_WORKERS_S)
            try:
                client.wait_for_workers(1, timeout=WAIT_FOR_WORKERS_S)
            except Exception as exc:  # noqa: BLE001 - distributed raises a plain TimeoutError
                raise DuctaflowError(
                    f"no Dask worker joined {self.address} within {WAIT_FOR_WORKERS_S:.0f}s ({exc}); "
                    "scale the cluster up or pass max_parallel"
                ) from None
            threads = sum(client.nthreads().values())
        self.workers = max(1, int(max_workers or threads or 1))
        if type(getattr(client, "cluster", None)).__name__ == "LocalCluster":
            # deferred: the plugin module imports distributed (heavy) at its top
            from ductaflow.conductor.executors.dask_plugin import IgnoreTerminalInterrupt

            client.register_plugin(IgnoreTerminalInterrupt())

    @classmethod
    def create(cls, address: str | None, max_workers: int | None, *, worker_wait: float | None = None) -> DaskBackend:
        """Connect to ``address``, or start a LocalCluster of one-thread worker processes."""
        distributed = _distributed()
        if address:
            try:
                client = distributed.Client(address, timeout="20s")
            except Exception as exc:  # noqa: BLE001 - OSError, TimeoutError, CommClosedError ...
                raise DuctaflowError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
            return cls(client, max_workers, owned=True, worker_wait=worker_wait)
        n = max(1, int(max_workers or os.cpu_count() or 1))
        # Workers are thin (the work happens in kernels, their children): no memory limit
        # that would pause or restart a worker for its kernels' memory.
        with terminal_interrupt_ignored():  # inherited by the worker processes it spawns
            cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True, memory_limit=0)
        return cls(distributed.Client(cluster), max_workers, owned=True, cluster=cluster, worker_wait=worker_wait)

    @property
    def address(self) -> str:
        return str(getattr(self.client.scheduler, "address", "the Dask scheduler"))

    def describe(self) -> str:
        where = "a Dask LocalCluster" if self.cluster is not None else f"Dask scheduler {self.address}"
        link = getattr(self.client, "dashboard_link", None)
        return f"{self.workers} slot(s) on {where}" + (f" (dashboard: {link})" if link else "")

    def submit(self, fn: Callable[[Any], Any], task: Any) -> Future[Any]:
        label = getattr(task, "instance", None) or getattr(fn, "__name__", "task")  # a BuildTask's instance
        key = f"ductaflow-{label}-{uuid.uuid4().hex[:12]}"  # unique: never deduplicated
        dfut = self.client.submit(fn, task, key=key, pure=False, retries=0)
        relay: Future[Any] = Future()
        relay.set_running_or_notify_cancel()

        def done(f: Any) -> None:
            try:
                relay.set_result(f.result())
            except BaseException as exc:  # noqa: BLE001 - KilledWorker, CancelledError ... reach the caller
                relay.set_exception(exc)

        dfut.add_done_callback(done)
        self._tasks[relay] = dfut
        return relay

    def check_shared(self, runs_root: Path, inputs: Sequence[Path]) -> None:
        """Every worker reads a token this process wrote and writes one back; else raise."""
        token = uuid.uuid4().hex
        folder = runs_root / PROBE_DIR / token
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "coordinator").write_text(token, encoding="utf-8")
        try:
            try:
                answers = self.client.run(probe_worker, str(folder), token, [str(p) for p in inputs])
            except Exception as exc:  # noqa: BLE001 - e.g. ductaflow not importable on the workers
                raise DuctaflowError(
                    f"the Dask workers could not run ductaflow's start-up check ({type(exc).__name__}: {exc}); "
                    "install ductaflow in the workers' environment"
                ) from None
            problems = []
            for worker, ans in sorted(answers.items()):
                if ans.get("problem"):
                    problems.append(f"{worker} on {ans.get('host')}: {ans['problem']}")
                elif not (folder / ans["wrote"]).is_file():
                    where = f"{worker} on {ans.get('host')}"
                    problems.append(f"{where}: wrote {ans['wrote']}, which this process cannot see")
            if problems:
                raise SharedFilesystemError(
                    f"runs root {runs_root} is not shared with the Dask workers at the same path "
                    f"(put it, and the project, on a filesystem every worker mounts there): {'; '.join(problems)}"
                )
            versions = {a.get("ductaflow") for a in answers.values()}
            if versions - {__version__}:
                log.warning("Dask workers run ductaflow %s, this process %s", sorted(map(str, versions)), __version__)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
            with contextlib.suppress(OSError):
                folder.parent.rmdir()

    def stop(self, instance_dirs: Sequence[str]) -> None:
        try:
            self.client.run(stop_on_worker, list(instance_dirs))
        except Exception as exc:  # noqa: BLE001 - best effort; shutdown still reaps an owned cluster
            log.warning("could not ask the Dask workers to stop their builds: %s", exc)

    def shutdown(self) -> None:
        pending = [f for f in self._tasks.values() if not f.done()]
        try:
            if pending:
                self.client.cancel(pending)
        except Exception as exc:  # noqa: BLE001
            log.debug("cancelling Dask tasks: %s", exc)
        self._tasks.clear()
        if self.owned:
            # The cluster restores its log level when it closes; its farewells are not news.
            quiet = logging.getLogger("distributed")
            level = quiet.level
            quiet.setLevel(logging.ERROR)
            try:
                self.client.close()
                if self.cluster is not None:
                    self.cluster.close()
            finally:
                quiet.setLevel(level)


def probe_worker(folder: str, token: str, inputs: list[str]) -> dict[str, Any]:
    """Worker side of the shared-filesystem check: plain data back, never raises (runs on the
    worker, so ``__version__`` is the worker's own)."""
    answer: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid(), "ductaflow": __version__}
    probe = Path(folder)
    try:
        seen = (probe / "coordinator").read_text(encoding="utf-8")
    except OSError as exc:
        return {**answer, "problem": f"cannot read {probe / 'coordinator'} ({exc.strerror or exc})"}
    if seen != token:
        return {**answer, "problem": f"{probe / 'coordinator'} holds another token: a different filesystem"}
    missing = [p for p in inputs if not Path(p).is_file()]
    if missing:
        return {**answer, "problem": f"cannot see {', '.join(missing)}"}
    name = f"worker-{answer['host']}-{answer['pid']}-{uuid.uuid4().hex[:6]}"
    try:
        (probe / name).write_text(token, encoding="utf-8")
    except OSError as exc:
        return {**answer, "problem": f"cannot write in {probe} ({exc.strerror or exc})"}
    return {**answer, "wrote": name}


def stop_on_worker(instance_dirs: list[str]) -> int:
    """Worker side of Ctrl-C: interrupt this worker's builds in ``instance_dirs`` (non-blocking)."""
    from ductaflow.kernels.engine import stop_kernels  # deferred: heavy, needed only on a Ctrl-C

    return stop_kernels(instance_dirs)
