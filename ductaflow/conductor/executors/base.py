"""The Backend interface the conductor schedules on, and its plain-Executor implementation."""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

from ductaflow.kernels.adapters import pool_processes, pool_size

log = logging.getLogger(__name__)


class Health(enum.Enum):
    """What the conductor's loop hears from a cluster when it wakes up."""

    OK = "ok"
    NO_WORKERS = "no worker connected"
    RECONNECTING = "reconnecting to the scheduler"
    LOST = "the scheduler was lost"


class Backend:
    """A pool of workers for builds, as the conductor sees it."""

    name = "executor"
    #: How many builds the conductor keeps in flight (at start; see :meth:`slots`).
    workers: int = 1
    #: Seconds between the loop's wake-ups to look at the cluster (None: a fixed pool, never).
    wake_every: float | None = None
    #: How long a cluster may have no worker before the scenarios not yet run are given up.
    worker_wait: float = 300.0

    def slots(self) -> int:
        """How many builds to keep in flight now (a cluster's grow and shrink with its workers)."""
        return self.workers

    def health(self) -> Health:
        """Whether builds can run now (a fixed pool: always)."""
        return Health.OK

    def why_idle(self) -> str:
        """What the conductor says while :meth:`health` is ``NO_WORKERS``."""
        return "no worker connected"

    def submit(self, fn: Callable[[Any], Any], task: Any) -> Future[Any]:
        """Start ``fn(task)`` somewhere; a re-submitted identical task must run again."""
        raise NotImplementedError

    def describe(self) -> str:
        """One line for the progress output: where the builds run."""
        return f"{self.workers} worker(s)"

    def check_shared(self, runs_root: Path, inputs: Sequence[Path]) -> None:
        """Fail before any build starts when workers cannot see ``runs_root`` or ``inputs``."""

    def stop(self, instance_dirs: Sequence[str]) -> None:
        """Ask the running builds in ``instance_dirs`` to stop as a Ctrl-C would."""

    def shutdown(self) -> None:
        """Release what this backend started (never a pool the user passed in)."""


@contextlib.contextmanager
def terminal_interrupt_ignored() -> Iterator[None]:
    """SIGINT ignored for the duration (main thread only), so that processes started meanwhile
    inherit the ignored disposition: a terminal's Ctrl-C cannot kill them before they set up."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _signal_pool_workers(executor: Executor) -> int:
    """SIGTERM a process pool's workers (they turn it into KeyboardInterrupt); returns how many."""
    sent = 0
    for proc in pool_processes(executor):
        try:
            os.kill(proc.pid, signal.SIGTERM)
            sent += 1
        except (ProcessLookupError, PermissionError, TypeError):
            pass
    return sent


class ExecutorBackend(Backend):
    """Any ``concurrent.futures.Executor``; one the user passed in is never shut down by us."""

    def __init__(self, executor: Executor, max_workers: int | None, owned: bool = False) -> None:
        self.executor = executor
        self.owned = owned
        self.workers = max(1, int(max_workers or pool_size(executor) or os.cpu_count() or 1))
        self._futures: set[Future[Any]] = set()  # the unfinished ones: cancelled at shutdown
        self.name = type(executor).__name__

    def submit(self, fn: Callable[[Any], Any], task: Any) -> Future[Any]:
        fut = self.executor.submit(fn, task)
        self._futures.add(fut)
        fut.add_done_callback(self._futures.discard)  # memory stays flat over a long table
        return fut

    def describe(self) -> str:
        return f"{self.workers} worker(s) of a {self.name}"

    def stop(self, instance_dirs: Sequence[str]) -> None:
        # deferred: the engine imports papermill (heavy); only a stop needs it
        from ductaflow.kernels.engine import stop_kernels

        # Builds in this process's threads are stopped directly; pool processes by signal.
        stop_kernels(instance_dirs)
        _signal_pool_workers(self.executor)

    def shutdown(self) -> None:
        if self.owned:
            self.executor.shutdown(wait=True, cancel_futures=True)
        else:
            for fut in list(self._futures):
                fut.cancel()
