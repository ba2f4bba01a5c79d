"""Is that process still running? Identities that survive pid reuse (pid + start time + host).

A conductor writes its identity into its tasks and its state file; workers watch it (and
stop their builds when it is gone) and the report tells a killed conductor from a live one.
"""

from __future__ import annotations

import os
import socket
from typing import Any


def identity() -> dict[str, Any]:
    """This process as others can check it later: pid, start time, host."""
    import psutil

    return {"pid": os.getpid(), "created": psutil.Process().create_time(), "host": socket.gethostname()}


def running(pid: int, created: float | None = None) -> bool:
    """True while the process ``pid`` runs (not a zombie) and, when ``created`` is given, is
    the one that started then (not a reused pid)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        same = created is None or abs(proc.create_time() - created) < 0.01
        return same and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:  # it exists, we may just not look at it
        return True


def gone(who: Any) -> bool:
    """True when ``who`` (an :func:`identity`) is a process on this host that no longer runs;
    unknown, malformed or on another host: not known to be gone."""
    if not isinstance(who, dict) or who.get("host") != socket.gethostname():
        return False
    try:
        pid, created = int(who["pid"]), float(who["created"])
    except (KeyError, TypeError, ValueError):
        return False
    return not running(pid, created)
