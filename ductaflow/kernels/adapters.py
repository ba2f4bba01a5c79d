"""The one place where ductaflow reads another library's private names.

Each function here wraps one private attribute that no public API replaces at the same
cost; its docstring names the package and the attribute. docs/compatibility.md lists them
with the versions tested, and tests/test_adapters.py fails when one of them changes. Code
elsewhere in ductaflow must call these functions, never the private names themselves.

Standard library only, so any module may import it cheaply.
"""

from __future__ import annotations

from concurrent.futures import Executor
from typing import Any


def pool_processes(executor: Executor) -> list[Any]:
    """The live worker processes (``multiprocessing.Process``) of a process pool; ``[]`` for
    any other executor.

    CPython ``concurrent.futures.ProcessPoolExecutor._processes`` (a dict pid -> Process):
    the pool offers no public way to reach its workers, and ductaflow must signal them (a
    conductor's Ctrl-C, SIGTERM) and make sure they exit at shutdown."""
    processes = getattr(executor, "_processes", None)
    return list(processes.values()) if isinstance(processes, dict) else []


def pool_size(executor: Executor) -> int | None:
    """How many workers an executor runs, when it says; ``None`` when unknown.

    CPython ``ThreadPoolExecutor._max_workers`` / ``ProcessPoolExecutor._max_workers``:
    no public attribute gives an executor's size, and ``conduct(executor=pool)`` keeps that
    many builds in flight unless ``max_parallel`` says otherwise."""
    size = getattr(executor, "_max_workers", None)
    return size if isinstance(size, int) and size > 0 else None
