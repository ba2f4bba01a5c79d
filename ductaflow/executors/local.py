"""Builds on this machine: a forkserver process pool (the default) or serially in-process.

``local`` is a forkserver pool because a fork pool created after kernels have run can
hang; ``serial`` runs each build at submit time, one after another, for debugging.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ductaflow.executors.base import ExecutorBackend

log = logging.getLogger(__name__)

_BUSY = False


def _worker_init() -> None:
    """Worker processes ignore the terminal's Ctrl-C (the parent coordinates shutdown)
    and turn SIGTERM into KeyboardInterrupt while a build runs, so its kernels are reaped."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def _on_term(signum: int, frame: Any) -> None:
        if _BUSY:
            raise KeyboardInterrupt
        os._exit(0)

    signal.signal(signal.SIGTERM, _on_term)


def mark_busy(busy: bool) -> None:
    """Called by the task wrapper around a build so SIGTERM knows what to do."""
    global _BUSY
    _BUSY = busy


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
        return ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context(method), initializer=_worker_init
        )

    def submit(self, fn: Callable[[dict[str, Any]], dict[str, Any]], task: dict[str, Any]) -> Future[Any]:
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


class SerialBackend(ExecutorBackend):
    """One build at a time in this process (each flow still gets its own fresh kernel)."""

    def __init__(self) -> None:
        super().__init__(SerialExecutor(), 1, owned=True)
        self.name = "serial"

    def describe(self) -> str:
        return "this process, one build at a time"

    def stop(self, instance_dirs: Any) -> None:
        """Nothing to do: the terminal's Ctrl-C already reached the build in this thread."""
