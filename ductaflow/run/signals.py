"""SIGTERM as an exception while a flow runs, so that its kernel is killed and its record written.

A batch system ends a job at its walltime with SIGTERM. Python's default would end the
process at once: no final status record, kernels orphaned. While a run is in progress the
signal raises :class:`Terminated` (a ``KeyboardInterrupt``, so every clean-up path for
Ctrl-C runs) and the record says ``terminated``.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived while a run was in progress."""


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """Inside the block, SIGTERM raises :class:`Terminated` (main thread, default handler only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not signal.SIG_DFL:
        yield
        return

    def _raise(signum: int, frame: Any) -> None:
        raise Terminated("SIGTERM")

    signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
