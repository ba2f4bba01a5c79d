"""The attempt file of one conductor task: the one reader and writer of its format.

A worker counts each start of a task in ``<attempts folder>/<instance>.json`` before it
runs the build. The count is how a re-run of a lost task (Dask re-submits it elsewhere)
knows that an earlier attempt died; the start time and host tell the conductor, after it
lost touch with a task, whether the build began and which of its records are this
attempt's.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from ductaflow.core.clock import now_iso
from ductaflow.store.atomic import atomic_write_json

ATTEMPT_SCHEMA = 1


@dataclass(frozen=True)
class Attempt:
    """The latest start of a task: how many starts so far, and where and when the last began."""

    count: int
    started: str | None = None  # UTC ISO time, the clock of the worker that wrote the build's records
    host: str | None = None
    pid: int | None = None


def read_attempt(path: Path | None) -> Attempt | None:
    """The task's attempt file, or None when no worker ever started it (or it cannot be read)."""
    if path is None:
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        count = int(doc.get("attempts", 0))
    except (OSError, ValueError, AttributeError, TypeError):
        return None
    if count < 1:
        return None
    pid = doc.get("pid")
    return Attempt(count, doc.get("started"), doc.get("host"), pid if isinstance(pid, int) else None)


def claim_attempt(path: Path) -> int:
    """Count this start of a task in its attempt file; returns the attempt number (1 = first)."""
    earlier = read_attempt(path)
    count = (earlier.count if earlier else 0) + 1
    doc = {"schema": ATTEMPT_SCHEMA, "attempts": count, "started": now_iso(), "host": socket.gethostname(),
           "pid": os.getpid()}  # fmt: skip
    atomic_write_json(path, doc)
    return count
