"""Builds on Dask distributed: a LocalCluster, an existing scheduler, or any Client
(``dask_jobqueue.SLURMCluster`` and friends included).

The task shipped to a worker is the conductor's thin build wrapper; every flow still
runs in its own kernel, launched by the worker with ``subprocess`` (never
``multiprocessing``: Dask worker processes are daemonic). Submissions are never
deduplicated (``pure=False`` and a unique key), so re-running a scenario runs it.
Workers must see the runs root at the same path as this process. :meth:`check_shared`
asks the workers present at the start, and every build proves it again on the worker
that takes it (:func:`~ductaflow.conductor.executors.dask_remote.run_on_worker`), so a
worker that joins later, without the shared filesystem, is excluded and the build sent
elsewhere; never counted green. The number of builds in flight follows the cluster's
worker threads as workers come and go (adaptive and jobqueue clusters), capped by
``max_parallel`` when given.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pkgutil
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from ductaflow._version import __version__
from ductaflow.conductor.executors.base import Backend, Health, terminal_interrupt_ignored
from ductaflow.conductor.executors.dask_remote import (
    TOKEN_NAME,
    Probe,
    Unshared,
    probe_worker,
    run_on_worker,
    stop_on_worker,
)
from ductaflow.conductor.tasks import BuildOutcome
from ductaflow.core.lights import Status
from ductaflow.errors import DuctaflowError, MissingExtra, SharedFilesystemError
from ductaflow.store.layout import PROBE_DIR

log = logging.getLogger(__name__)

#: How long the sweep waits while no worker is connected (e.g. SLURM jobs queued) before giving up.
WAIT_FOR_WORKERS_S = 300.0
#: How often the conductor's loop looks at the cluster: workers joining or leaving, the scheduler.
WAKE_EVERY_S = 1.0
#: How long the cluster's worker threads, as last asked, are taken as current.
_THREADS_TTL_S = 1.0
#: How many times a build that landed on a worker unable to run it is sent elsewhere.
_MAX_BOUNCES = 3


def _distributed() -> Any:
    try:
        import distributed  # deferred: heavy, and only installed with the dask extra
    except ImportError:
        raise MissingExtra("the dask executor", "dask", "distributed") from None
    return distributed


def _dask_config() -> Any:
    """``dask.config`` (installed with distributed)."""
    import dask.config  # deferred: heavy, and only installed with the dask extra

    return dask.config


class DaskBackend(Backend):
    """Builds as Dask tasks, relayed to ``concurrent.futures`` futures for the conductor."""

    name = "dask"
    wake_every = WAKE_EVERY_S

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
        self.cluster = cluster
        self.owned = owned
        self.max_workers = max_workers
        self.worker_wait = WAIT_FOR_WORKERS_S if worker_wait is None else float(worker_wait)
        self.probe: Probe | None = None  # the sweep's token, set by check_shared
        self._inputs: list[str] = []  # files every worker must see (the build, its flows)
        self.admitted: set[str] = set()  # workers that passed the check when they joined
        self.excluded: dict[str, str] = {}  # worker address -> why it runs no build
        self.scratch: str | None = None  # a LocalCluster's scratch folder, ours to remove
        self._tasks: dict[Future[Any], Any] = {}  # keeps each Dask future alive until it is answered
        self._threads: tuple[float, dict[str, int]] = (float("-inf"), {})
        self._lock = threading.Lock()
        self.workers = self.slots()
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
        scratch = tempfile.mkdtemp(prefix="ductaflow-dask-")  # the workers' scratch space, removed at shutdown
        # the scheduler in this process takes its scratch space from the config, the workers from the argument
        with terminal_interrupt_ignored(), _dask_config().set({"temporary-directory": scratch}):
            cluster = distributed.LocalCluster(
                n_workers=n, threads_per_worker=1, processes=True, memory_limit=0, local_directory=scratch
            )
        backend = cls(distributed.Client(cluster), max_workers, owned=True, cluster=cluster, worker_wait=worker_wait)
        backend.scratch = scratch
        return backend

    @property
    def address(self) -> str:
        return str(getattr(self.client.scheduler, "address", "the Dask scheduler"))

    def describe(self) -> str:
        where = "a Dask LocalCluster" if self.cluster is not None else f"Dask scheduler {self.address}"
        cap = f", at most {self.max_workers}" if self.max_workers else ""
        link = getattr(self.client, "dashboard_link", None)
        slots = f"{self.slots()} slot(s) now (following the cluster's worker threads{cap})"
        return f"{slots} on {where}" + (f" (dashboard: {link})" if link else "")

    # ------------------------------------------------------------ the cluster as it is now
    def _nthreads(self) -> dict[str, int]:
        """Worker address -> threads, asked of the scheduler at most once a second."""
        asked, threads = self._threads
        if time.monotonic() - asked > _THREADS_TTL_S:
            try:
                threads = dict(self.client.nthreads())
            except Exception:  # noqa: BLE001 - a closed client, a lost scheduler: no worker
                threads = {}
            self._threads = (time.monotonic(), threads)
        return threads

    def _usable(self) -> list[str]:
        """Workers that builds may go to: checked when they joined (all, without a check) and not excluded."""
        checked = self.probe is None
        return [w for w in self._nthreads() if (checked or w in self.admitted) and w not in self.excluded]

    def slots(self) -> int:
        if getattr(self.client, "status", "running") != "running":
            return 0  # reconnecting or lost: nothing new goes to the scheduler
        threads = self._nthreads()
        usable = sum(threads[w] for w in self._usable())
        return min(usable, self.max_workers) if self.max_workers else usable

    def health(self) -> Health:
        """The scheduler's state; workers that joined since the last look are checked first."""
        status = getattr(self.client, "status", "running")
        if status == "connecting":
            return Health.RECONNECTING
        if status != "running":
            return Health.LOST
        joined = [w for w in self._nthreads() if w not in self.admitted and w not in self.excluded]
        if joined and self.probe is not None:
            self._admit(joined)
        return Health.OK if self._usable() else Health.NO_WORKERS

    def why_idle(self) -> str:
        if self.excluded:
            return f"no worker can run builds ({len(self.excluded)} excluded: {'; '.join(self._exclusions())})"
        return "no worker connected"

    def _exclusions(self) -> list[str]:
        return [f"{w} {why}" for w, why in sorted(self.excluded.items())]

    def _exclude(self, worker: str, why: str) -> None:
        with self._lock:
            if worker in self.excluded:
                return
            self.excluded[worker] = why
        log.warning("Dask worker %s runs no build of this sweep: %s", worker, why)

    # ------------------------------------------------------------ builds
    def submit(self, fn: Callable[[Any], Any], task: Any) -> Future[Any]:
        relay: Future[Any] = Future()
        relay.set_running_or_notify_cancel()
        self._send(fn, task, relay, 0)
        relay.add_done_callback(self._forget)
        return relay

    def _forget(self, relay: Future[Any]) -> None:
        """An answered build's Dask future is released: memory stays flat over a long table, and
        the scheduler never recomputes a finished build because the worker holding it left."""
        dfut = self._tasks.pop(relay, None)
        if dfut is not None:
            with contextlib.suppress(Exception):  # a closed client: nothing left to release
                dfut.release()

    def _send(self, fn: Callable[[Any], Any], task: Any, relay: Future[Any], bounces: int) -> None:
        """Submit ``task`` (again, after ``bounces`` landings on workers that could not run it)."""
        label = getattr(task, "instance", None) or getattr(fn, "__name__", "task")  # a BuildTask's instance
        key = f"ductaflow-{label}-{uuid.uuid4().hex[:12]}"  # unique: never deduplicated
        where: dict[str, Any] = {}
        if self.excluded:  # prefer the others; loose, so that workers joining later may take it
            where = {"workers": self._usable() or None, "allow_other_workers": True}
        dfut = self.client.submit(run_on_worker, fn, task, self.probe, key=key, pure=False, retries=0, **where)
        self._tasks[relay] = dfut
        dfut.add_done_callback(lambda f: self._answer(f, fn, task, relay, bounces))

    def _answer(self, dfut: Any, fn: Callable[[Any], Any], task: Any, relay: Future[Any], bounces: int) -> None:
        """A Dask task ended: relay its result, or send the build elsewhere when its worker could not run it."""
        if relay.done():
            return
        try:
            value = dfut.result()
        except BaseException as exc:  # noqa: BLE001 - KilledWorker, CancelledError ... reach the caller
            setup = self._missing_ductaflow(exc)
            if setup is None or not hasattr(task, "instance"):
                relay.set_exception(exc)
                return
            value = Unshared(setup[0], setup[0], setup[1], kind="worker_setup")
        try:
            if isinstance(value, Unshared):
                on = "" if value.worker == value.where else f"({value.where}): "
                self._exclude(value.worker, on + value.problem)
                if bounces < _MAX_BOUNCES and self._usable():
                    self._send(fn, task, relay, bounces + 1)
                    return
                value = _refused(task.instance, value)
            relay.set_result(value)
        except BaseException as exc:  # noqa: BLE001 - a resubmission that failed reaches the caller
            if not relay.done():
                relay.set_exception(exc)

    def _missing_ductaflow(self, exc: BaseException) -> tuple[str, str] | None:
        """For a task that failed to import ductaflow on its worker: (worker, why), else None."""
        if not isinstance(exc, ImportError) or "ductaflow" not in str(exc):
            return None
        try:
            # a stdlib function, so it runs on a worker without ductaflow: ImportError there
            answers = self.client.run(pkgutil.resolve_name, "ductaflow._version:__version__", on_error="return")
        except Exception:  # noqa: BLE001 - the scheduler is gone too: report the original error
            return None
        for worker, answer in sorted(answers.items()):
            if isinstance(answer, BaseException) and worker not in self.excluded:
                return worker, f"cannot import ductaflow ({type(exc).__name__}: {exc}); install it there"
        return None

    # ------------------------------------------------------------ the start-up check
    def check_shared(self, runs_root: Path, inputs: Sequence[Path]) -> None:
        """The workers present now read a token this process wrote and write one back; those that
        cannot are excluded, as are workers that fail it when they join later (and every build
        checks again where it runs). Raises when every worker present fails."""
        token = uuid.uuid4().hex
        folder = runs_root / PROBE_DIR / token
        folder.mkdir(parents=True, exist_ok=True)
        (folder / TOKEN_NAME).write_text(token, encoding="utf-8")
        self.probe = Probe(str(folder), token)
        self._inputs = [str(p) for p in inputs]
        present = list(self._nthreads())
        if not present:
            return  # no worker yet (jobs queued): each is checked as it joins
        answers, problems, unimportable = self._admit(present, exclude=False)
        if answers and len(problems) == len(answers):
            if unimportable == len(answers):
                raise DuctaflowError(
                    f"the Dask workers could not run ductaflow's start-up check ({'; '.join(problems.values())}); "
                    "install ductaflow in the workers' environment"
                )
            raise SharedFilesystemError(
                f"runs root {runs_root} is not shared with the Dask workers at the same path "
                f"(put it, and the project, on a filesystem every worker mounts there): "
                f"{'; '.join(f'{w} {p}' for w, p in sorted(problems.items()))}"
            )
        for worker, problem in problems.items():
            self._exclude(worker, problem)
        versions = {a.get("ductaflow") for a in answers.values() if isinstance(a, dict)}
        if versions - {__version__}:
            log.warning("Dask workers run ductaflow %s, this process %s", sorted(map(str, versions)), __version__)

    def _admit(self, workers: list[str], exclude: bool = True) -> tuple[dict[str, Any], dict[str, str], int]:
        """Run the shared-filesystem check on ``workers``: those that pass are admitted, the others
        excluded (when ``exclude``). Returns the answers, the problems, how many lack ductaflow."""
        assert self.probe is not None
        folder = Path(self.probe.folder)
        try:
            answers = self.client.run(probe_worker, str(folder), self.probe.token, self._inputs, workers=workers,
                                      on_error="return")  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - a worker that left meanwhile, a lost scheduler
            log.debug("checking Dask workers %s: %s", workers, exc)
            return {}, {}, 0
        problems, unimportable = _probe_problems(folder, answers)
        for leftover in folder.iterdir():
            if leftover.name != TOKEN_NAME:
                leftover.unlink(missing_ok=True)
        self.admitted.update(w for w in answers if w not in problems)
        if exclude:
            for worker, problem in problems.items():
                self._exclude(worker, problem)
        return answers, problems, unimportable

    def stop(self, instance_dirs: Sequence[str]) -> None:
        try:
            self.client.run(stop_on_worker, list(instance_dirs))
        except Exception as exc:  # noqa: BLE001 - best effort; shutdown still reaps an owned cluster
            log.warning("could not ask the Dask workers to stop their builds: %s", exc)

    def shutdown(self) -> None:
        pending = [f for f in self._tasks.values() if not f.done()]
        try:
            if pending and self.client.status == "running":
                self.client.cancel(pending)
        except Exception as exc:  # noqa: BLE001
            log.debug("cancelling Dask tasks: %s", exc)
        self._tasks.clear()
        if self.probe is not None:
            folder = Path(self.probe.folder)
            shutil.rmtree(folder, ignore_errors=True)
            with contextlib.suppress(OSError):
                folder.parent.rmdir()
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
                if self.scratch is not None:
                    shutil.rmtree(self.scratch, ignore_errors=True)


def _probe_problems(folder: Path, answers: dict[str, Any]) -> tuple[dict[str, str], int]:
    """Per worker, why the start-up check failed there; and how many could not even run it."""
    problems: dict[str, str] = {}
    unimportable = 0
    for worker, ans in sorted(answers.items()):
        if isinstance(ans, BaseException):
            why = f"{type(ans).__name__}: {ans}"
            problems[worker] = f"could not run ductaflow's check ({why}); is ductaflow installed there?"
            unimportable += 1
        elif ans.get("problem"):
            problems[worker] = f"on {ans.get('host')}: {ans['problem']}"
        elif not (folder / ans["wrote"]).is_file():
            problems[worker] = f"on {ans.get('host')}: wrote {ans['wrote']}, which this process cannot see"
    return problems, unimportable


def _refused(instance: str, unshared: Unshared) -> BuildOutcome:
    """The red outcome of a build no worker that took it could run."""
    where = unshared.worker if unshared.worker == unshared.where else f"{unshared.worker} ({unshared.where})"
    error = f"{unshared.kind}: worker {where} could not run it: {unshared.problem}; no other worker was available"
    return BuildOutcome(instance, Status.RED, error=error, worker=where)
