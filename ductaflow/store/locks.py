"""File locks: the instance lock (one process at a time runs a given flow instance), and
a plain lock file for other shared work (merging the ledger)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from ductaflow.errors import DuctaflowError
from ductaflow.store.layout import lock_path

log = logging.getLogger(__name__)


@contextmanager
def instance_lock(exec_dir: Path, flow_name: str, waited: list[bool] | None = None) -> Any:
    """Hold ``<exec_dir>/.<flow>.lock`` while a flow runs there; wait (and say so) if taken."""
    lock = FileLock(str(lock_path(exec_dir, flow_name)))
    try:
        exec_dir.mkdir(parents=True, exist_ok=True)
        try:
            lock.acquire(timeout=0)
        except Timeout:  # (a subclass of OSError) another process runs this instance
            log.warning("%s in %s is being run by another process; waiting for it", flow_name, exec_dir)
            if waited is not None:
                waited.append(True)
            lock.acquire()
    except Timeout:
        raise
    except OSError as exc:  # a read-only or full disk: one clear line, not a bare OSError
        raise DuctaflowError(f"cannot write to instance directory {exec_dir}: {exc.strerror or exc}") from None
    try:
        yield lock
    finally:
        lock.release()


def is_held(exec_dir: Path, flow_name: str) -> bool:
    """True when some live process holds the instance lock (a 'running' record is real)."""
    path = lock_path(exec_dir, flow_name)
    if not path.exists():
        return False
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False


@contextmanager
def file_lock(path: Path, timeout: float | None = None) -> Iterator[bool]:
    """Hold the lock file ``path`` for the block; yields whether it is held. ``timeout`` None
    waits as long as it takes, 0 tries once: the block then runs unlocked, told so by False."""
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=-1 if timeout is None else timeout)
        held = True
    except Timeout:  # another process holds it
        held = False
    try:
        yield held
    finally:
        if held:
            lock.release()
