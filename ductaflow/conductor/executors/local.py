"""Builds on this machine: a forkserver process pool (the default) or serially in-process.

``local`` is a forkserver pool because a fork pool created after kernels have run can
hang; ``serial`` runs each build at submit time, one after another, for debugging.
As multiprocessing documents, each worker re-runs the conductor's script (as
``__mp_main__``: code under ``if __name__ == "__main__":`` does not run); a script read from
stdin cannot be re-run, and then the workers are forked from the conductor instead.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ductaflow.conductor import worker
from ductaflow.conductor.executors.base import ExecutorBackend, terminal_interrupt_ignored
from ductaflow.core.liveness import identity
from ductaflow.kernels.adapters import pool_processes

log = logging.getLogger(__name__)

#: How long idle workers get to exit after the pool is shut down before they are killed.
_SHUTDOWN_GRACE_S = 10.0


def _worker_init(conductor: dict[str, Any] | None = None) -> None:
    """Worker processes ignore the terminal's Ctrl-C (the parent coordinates shutdown);
    SIGTERM stops the running build as Ctrl-C would (its kernels reaped, its record
    ``interrupted``), or ends an idle worker. A worker whose conductor is gone exits, idle
    or not: one still starting when the conductor stopped would otherwise wait forever."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if conductor is not None:
        worker.watch_conductor(conductor)

    def _on_term(signum: int, frame: Any) -> None:
        if worker.busy() is None:
            os._exit(0)  # an idle pool worker: nothing to record, nothing to clean up
        worker.stop_running_build()

    signal.signal(signal.SIGTERM, _on_term)


# What every worker imports to run a build, imported once by the forkserver (which never
# runs a kernel) instead of by each worker at once: on 2 cores the first builds started ~1 s
# sooner. And pandas: multiprocessing re-runs the conductor's script in every worker (its
# documented "safe importing of the main module"), and a script that calls conduct() imports
# pandas, which the forkserver then has imported already (~0.25 s less per conduct, measured).
# And jupytext: every build reads its flow file (~0.13 s a worker otherwise).
_WORKER_MODULES = (
    "ductaflow.conductor.worker", "ductaflow.run.execute", "ductaflow.kernels.engine", "jupytext", "pandas",
)  # fmt: skip


def _main_reimportable() -> bool:
    """Whether a forkserver (or spawned) worker can re-run ``__main__`` as multiprocessing
    does: by module name, from its file, or nothing to re-run (``python -c``). A script
    read from stdin (``python - < conductor.py``, file ``<stdin>``) cannot be."""
    main = sys.modules.get("__main__")
    if main is None or getattr(getattr(main, "__spec__", None), "name", None):
        return True
    path = getattr(main, "__file__", None)
    return path is None or os.path.isfile(path)


def start_forkserver() -> str:
    """The pool's start method; for ``forkserver``, the server is started now (idempotent).

    The server imports :data:`_WORKER_MODULES` before it forks its first worker (~1 s of one
    core), overlapping the kernel template's start and the first state and report writes.
    It is started only once planning found something to run: started before planning, it
    overlapped the planning too (~0.3 s sooner first builds), but a sweep with nothing to
    run then paid for it (a no-op re-run 0.98 -> 1.37 s with its output in a pipe, which the
    server holds open until its imports are done).
    """
    methods = multiprocessing.get_all_start_methods()
    if not _main_reimportable() and "fork" in methods:
        # Workers forked from this process need not re-run the script; kernels never run
        # in a conductor's own process, so no kernel's threads are copied.
        log.info("the conductor's script cannot be re-run by workers (read from stdin?): forking them")
        return "fork"
    if "forkserver" not in methods:
        return "spawn"
    # Workers are forked from the forkserver with its signal dispositions: start it with
    # SIGINT ignored, so a Ctrl-C cannot kill a worker before _worker_init runs.
    from multiprocessing import forkserver

    forkserver.set_forkserver_preload(list(_WORKER_MODULES))
    with terminal_interrupt_ignored():
        forkserver.ensure_running()
    return "forkserver"


class SerialExecutor(Executor):
    """Runs each task at submit time in this process: for debugging and tiny tables."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_running_or_notify_cancel()
        try:
            future.set_result(fn(*args, **kwargs))
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - delivered through the future
            future.set_exception(exc)
        return future


class LocalBackend(ExecutorBackend):
    """A process pool whose workers start from a clean forkserver, sized to the machine."""

    name = "local"

    def __init__(self, max_workers: int | None) -> None:
        workers = max(1, int(max_workers or os.cpu_count() or 1))
        super().__init__(self._pool(workers), workers, owned=True)
        self.name = "local"

    @staticmethod
    def _pool(workers: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context(start_forkserver()),
            initializer=_worker_init,
            initargs=(identity(),),
        )

    def submit(self, fn: Callable[[Any], Any], task: Any) -> Future[Any]:
        """As the pool's submit; a pool broken by a dead worker is replaced so the queue goes on."""
        try:
            return super().submit(fn, task)
        except BrokenProcessPool:
            log.warning("a worker process died; the builds it shared the pool with are lost, starting a new pool")
            self.executor.shutdown(wait=True, cancel_futures=True)
            self.executor = self._pool(self.workers)
            return super().submit(fn, task)

    def describe(self) -> str:
        return f"{self.workers} local worker process(es)"

    def shutdown(self) -> None:
        """Stop the pool without trusting it to stop: a Ctrl-C that reaches a worker while
        it is still starting can leave ``shutdown(wait=True)`` waiting forever. The builds
        are over (finished, or interrupted and waited for) when this is called."""
        procs = pool_processes(self.executor)
        self.executor.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + _SHUTDOWN_GRACE_S
        for proc in procs:
            proc.join(timeout=max(0.0, deadline - time.monotonic()))
        for proc in procs:
            if proc.is_alive():
                log.warning("worker process %s did not exit; killing it", proc.pid)
                proc.kill()
                proc.join(timeout=5)


class SerialBackend(ExecutorBackend):
    """One build at a time in this process (each flow still gets its own fresh kernel)."""

    def __init__(self) -> None:
        super().__init__(SerialExecutor(), 1, owned=True)
        self.name = "serial"

    def describe(self) -> str:
        return "this process, one build at a time"

    def stop(self, instance_dirs: Any) -> None:
        """Nothing to do: the terminal's Ctrl-C already reached the build in this thread."""
