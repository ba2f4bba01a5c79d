"""The attempt file of one conductor task: the one reader and writer of its format.

A worker counts each start of a task in ``<attempts folder>/<instance>.json`` before it
runs the build. The count is how a re-run of a lost task (Dask re-submits it elsewhere)
knows that an earlier attempt died; the start time and host tell the conductor, after it
lost touch with a task, whether the build began and which of its records are this
attempt's.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from ductaflow.core.clock import now_iso
from ductaflow.core.liveness import gone
from ductaflow.store.atomic import atomic_write_json
from ductaflow.store.layout import ATTEMPTS_DIR

log = logging.getLogger(__name__)

ATTEMPT_SCHEMA = 1
#: In an attempts folder: the identity of the conductor that made it (instance names start alphanumeric).
OWNER_FILE = ".conductor.json"
#: A folder without an owner file is judged only once it is older than this (it may be being made).
_OWNER_GRACE_S = 60.0
#: psutil's process start times come from whole-second boot times: a margin before calling a pid reused.
_START_SLACK_S = 2.0


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


def remove_stale_attempts(runs_root: Path, keep: Path | None = None) -> list[str]:
    """Remove the attempts folders of conductors that are gone; returns their names.

    A folder is ``<build>-<pid>-<time_ns>``, made by the conductor with that pid at that time.
    Its owner file (the conductor's identity) decides when present: gone means gone on this
    host (one on another host is never judged). Without one (an older ductaflow, or a
    conductor killed while making it) it is stale once its pid runs no process on this host
    or one that started after the folder was named; a folder younger than a minute is left
    alone, as it may be being made.
    """
    folder = runs_root / ATTEMPTS_DIR
    try:
        entries = [e for e in folder.iterdir() if e.is_dir() and not e.name.startswith(".")]
    except OSError:
        return []
    removed = []
    for entry in entries:
        if entry != keep and _attempts_stale(entry):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
    if removed:
        log.info("removed %d attempts folder(s) of conductors that are gone: %s", len(removed), ", ".join(removed))
    return removed


def _attempts_stale(entry: Path) -> bool:
    """True when the conductor that made the attempts folder ``entry`` is known to be gone."""
    try:
        owner = json.loads((entry / OWNER_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        owner = None
    except (OSError, ValueError):
        return False  # there, but unreadable: not known to be gone
    if owner is not None:
        return gone(owner)
    parts = entry.name.rsplit("-", 2)
    try:
        pid, named_ns = int(parts[-2]), int(parts[-1])
    except (IndexError, ValueError):
        return False  # not a name this conductor makes
    if time.time_ns() - named_ns < _OWNER_GRACE_S * 1e9:
        return False
    return not _ran_since(pid, named_ns / 1e9)


def _ran_since(pid: int, when: float) -> bool:
    """True when ``pid`` is a live process on this host that had started by ``when`` (epoch seconds)."""
    import psutil  # deferred: only a conductor that finds a folder without an owner needs it

    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and proc.create_time() <= when + _START_SLACK_S
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:  # it exists, we may just not look at it
        return True
