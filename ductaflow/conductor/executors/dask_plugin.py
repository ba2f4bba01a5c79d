"""A Dask worker plugin for clusters on this machine (imported only when Dask is in use)."""

from __future__ import annotations

import signal
import threading
from typing import Any

from distributed import WorkerPlugin


class IgnoreTerminalInterrupt(WorkerPlugin):
    """LocalCluster workers share the terminal's process group, so a Ctrl-C would kill them
    mid-build; they ignore it and the conductor stops their builds through the scheduler."""

    name = "ductaflow-ignore-terminal-interrupt"

    def setup(self, worker: Any) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)
