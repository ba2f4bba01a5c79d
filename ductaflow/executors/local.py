"""Where builds run: a small registry of ``concurrent.futures`` executors by name.

The conductor has one scheduling loop over any Executor; this module only chooses the
pool. ``local`` is a forkserver process pool (a fork pool created after kernels have run
can hang), ``serial`` runs each build in the calling process, one after another.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import Any

from ductaflow.errors import DuctaflowError

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


def local_executor(max_workers: int) -> ProcessPoolExecutor:
    """A process pool whose workers start from a clean forkserver."""
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    return ProcessPoolExecutor(
        max_workers=max_workers, mp_context=multiprocessing.get_context(method), initializer=_worker_init
    )


EXECUTORS: dict[str, Callable[[int], Executor]] = {
    "local": local_executor,
    "serial": lambda _n: SerialExecutor(),
}


def make_executor(spec: str | Executor | None, max_workers: int) -> tuple[Executor, bool]:
    """Resolve a name or an Executor; the flag says whether we own (and must shut down) it."""
    if spec is None:
        spec = "local"
    if isinstance(spec, Executor):
        return spec, False
    if isinstance(spec, str):
        factory = EXECUTORS.get(spec)
        if factory is None:
            raise DuctaflowError(f"unknown executor '{spec}'; known: {', '.join(sorted(EXECUTORS))}")
        return factory(max_workers), True
    raise DuctaflowError(f"executor must be a name or a concurrent.futures.Executor, got {type(spec).__name__}")


def worker_pids(executor: Executor) -> list[int]:
    """The process ids of a process pool's workers (empty for other executors)."""
    procs = getattr(executor, "_processes", None) or {}
    return [p.pid for p in list(procs.values()) if p.pid]
