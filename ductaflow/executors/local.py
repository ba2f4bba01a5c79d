"""Builds on this machine: a forkserver process pool (the default) or serially in-process.

``local`` is a forkserver pool because a fork pool created after kernels have run can
hang; ``serial`` runs each build at submit time, one after another, for debugging.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ductaflow import stopping
from ductaflow.executors.base import ExecutorBackend, terminal_interrupt_ignored
from ductaflow.liveness import identity

log = logging.getLogger(__name__)

_BUSY: str | None = None  # the instance dir of the build this worker runs, if any
#: How long idle workers get to exit after the pool is shut down before they are killed.
_SHUTDOWN_GRACE_S = 10.0


def _worker_init(conductor: dict[str, Any] | None = None) -> None:
    """Worker processes ignore the terminal's Ctrl-C (the parent coordinates shutdown);
    SIGTERM stops the running build as Ctrl-C would (its kernels reaped, its record
    ``interrupted``), or ends an idle worker. A worker whose conductor is gone exits, idle
    or not: one still starting when the conductor stopped would otherwise wait forever."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if conductor is not None:
        from ductaflow.worker import watch_conductor

        watch_conductor(conductor)

    def _on_term(signum: int, frame: Any) -> None:
        if _BUSY is None:
            os._exit(0)
        # Nothing may raise from here into whatever the main thread was doing (an import,
        # a file write). A kernel that is not up yet is stopped when it starts.
        try:
            stopping.request([_BUSY])
            stop = getattr(sys.modules.get("ductaflow.engine"), "stop_kernels", None)  # may be mid-import
            if stop is not None:
                stop([_BUSY])
        except Exception:  # noqa: BLE001, S110 - a signal handler must not raise
            pass

    signal.signal(signal.SIGTERM, _on_term)


def mark_busy(instance_dir: str | None) -> None:
    """Called by the task wrapper around a build so SIGTERM knows what to stop."""
    global _BUSY
    _BUSY = instance_dir


@contextlib.contextmanager
def _main_file_hidden() -> Iterator[None]:
    """While workers start, ``__main__`` looks like ``python -c``: a worker needs nothing from
    the conductor's script (its task is ``ductaflow.worker.run_build``), and multiprocessing
    would otherwise re-run that script in every new worker: its imports (0.5 s with pandas,
    measured), any unguarded top-level code, or a crash when it was read from stdin."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or path is None:
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


_WORKER_MODULES = ("ductaflow.worker", "ductaflow.execute", "ductaflow.engine")


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
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        if method == "forkserver":
            # Workers are forked from the forkserver with its signal dispositions: start it
            # with SIGINT ignored, so a Ctrl-C cannot kill a worker before _worker_init runs.
            from multiprocessing import forkserver

            # What every worker imports to run a build, imported once by the forkserver
            # (which never runs a kernel) instead of by each worker at once: on 2 cores the
            # first builds started ~1 s sooner.
            forkserver.set_forkserver_preload(list(_WORKER_MODULES))
            with terminal_interrupt_ignored(), _main_file_hidden():
                forkserver.ensure_running()
        return ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context(method),
            initializer=_worker_init,
            initargs=(identity(),),
        )

    def submit(self, fn: Callable[[dict[str, Any]], dict[str, Any]], task: dict[str, Any]) -> Future[Any]:
        """As the pool's submit; a pool broken by a dead worker is replaced so the queue goes on."""
        with _main_file_hidden():  # workers start here, on demand
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
        procs = list((getattr(self.executor, "_processes", None) or {}).values())
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
