"""Build instances read once per change: records, roll-up and file listings, cached in-process.

A live report over 10,000 instances is rewritten again and again while most of their 40,000
records never change. Each instance read here is kept with the stat signature (inode, size,
mtime, ctime) of every folder it listed and every record it read, taken before reading: an
atomic rewrite, an edit in place, a new or deleted file and a swapped symlink all change one,
and the next read starts again from the files. A signature younger than ``RACY_NS`` is not
trusted (file times are coarse: a change in the same tick would not show), so such an
instance is read again next time.

Once a report has built its rows, what it read is settled (:meth:`InstanceCache.sweep`): a
reading keeps its layout and digest, which validate the row built from it, and a brief
snapshot (the roll-up ``ductaflow status`` shows and the kind of the build record) instead of
the parsed records and folder listings, 20 objects an instance that the garbage collector
would otherwise walk on every full collection. A settled snapshot is never used to build a
row: :meth:`InstanceCache.read` reads such an instance again.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ductaflow.report.links import DIR, FILE, LINK
from ductaflow.store.layout import FLOWS_SUBDIR, STATUS_SUFFIX, STEPS_FILE
from ductaflow.store.records import (
    InstanceSummary,
    read_status,
    read_steps,
    roll_up,
    sort_flows,
)
from ductaflow.store.records import log as records_log
from ductaflow.store.result import FlowResult, RunState

log = logging.getLogger(__name__)

#: Signatures whose mtime or ctime is this close to the read are not trusted (1 s covers
#: file systems that keep whole seconds).
RACY_NS = 1_000_000_000

Sig = tuple[int, int, int, int] | None
#: Record fields no reader of a snapshot shows; not kept for 10,000 instances.
_UNSHOWN = ("fingerprint_parts", "reasons")
_tokens = itertools.count(1)


def signature(path: str) -> Sig:
    """(inode, size, mtime, ctime) of ``path`` followed through symlinks; None when absent."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def listing(folder: str) -> dict[str, str] | None:
    """``{name: kind}`` of the files, symlinks and folders in ``folder`` (kinds as in
    :mod:`ductaflow.report.links`); None when it cannot be listed."""
    out = {}
    try:
        with os.scandir(folder) as it:
            for e in it:
                if e.is_symlink():
                    out[e.name] = LINK
                elif e.is_file(follow_symlinks=False):
                    out[e.name] = FILE
                elif e.is_dir(follow_symlinks=False):
                    out[e.name] = DIR
    except (OSError, ValueError):
        return None
    return out


@dataclass(frozen=True)
class Snapshot:
    """One build instance as read: its roll-up, what each of its folders holds, what went wrong."""

    token: int  # differs between any two reads that may differ
    instance_dir: str
    summary: InstanceSummary | None  # None when the instance dir cannot be listed
    files: dict[str, dict[str, str]] = field(default_factory=dict)  # folder -> listing()
    warnings: tuple[str, ...] = ()  # records that could not be read, as logged
    #: A settled snapshot's :meth:`rollup` (its summary is None and its files hold only the
    #: build record's entry: see :meth:`Reading.settle`); None for a snapshot as read.
    brief: tuple[Any, ...] | None = None

    def rollup(self) -> tuple[Any, ...]:
        """(status, state, duration, finished, worst flow, error, sweep) of the instance as
        ``ductaflow status`` shows it, and whether it has a build record."""
        if self.brief is not None:
            return self.brief
        summary = self.summary
        rec = summary.build if summary is not None else None
        return (
            summary.status.value if summary is not None and summary.status else None,
            rec.state if rec else "unknown",
            rec.duration if rec else None,
            rec.finished if rec else None,
            summary.worst_flow if summary is not None else None,
            summary.error if summary is not None else None,
            rec.sweep if rec else None,
            rec is not None,
        )

    @property
    def has_build(self) -> bool:
        """True when the instance has a build record."""
        if self.brief is not None:
            return bool(self.brief[-1])
        return self.summary is not None and self.summary.build is not None


class _Sink(logging.Handler):
    """Copies this thread's record-reading warnings into the snapshot being read."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.local = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        into = getattr(self.local, "into", None)
        if into is not None:
            into.append(record.getMessage())


_SINK = _Sink()
records_log.addHandler(_SINK)


_LAYOUTS: dict[tuple[str, ...], tuple[str, ...]] = {}


def _shared(layout: tuple[str, ...]) -> tuple[str, ...]:
    """One tuple for every instance laid out alike (10,000 instances, a handful of layouts)."""
    if len(_LAYOUTS) > 4096:
        _LAYOUTS.clear()
    return _LAYOUTS.setdefault(layout, layout)


_DIR_FD = os.stat in os.supports_dir_fd
_OPEN_DIR = getattr(os, "O_PATH", os.O_RDONLY) | getattr(os, "O_DIRECTORY", 0)


def digest(instance_dir: str, layout: tuple[str, ...]) -> int:
    """One hash of the signatures of ``layout``'s paths (relative to ``instance_dir``, "" for it).

    Relative to an open handle on the instance dir where the OS allows: the kernel then walks
    two or three path parts per file instead of ten (a third of the time at 10,000 instances).
    """
    if _DIR_FD:
        try:
            fd = os.open(instance_dir, _OPEN_DIR)
        except (OSError, ValueError):
            pass
        else:
            try:
                return _hash(_fd_signatures(fd, layout))
            finally:
                os.close(fd)
    sep = os.sep
    return _hash(signature(f"{instance_dir}{sep}{p}" if p else instance_dir) for p in layout)


def _fd_signatures(fd: int, layout: tuple[str, ...]) -> list[Sig]:
    """:func:`signature` of each of ``layout``'s paths below the folder open as ``fd`` (the
    folder itself for ""), in one loop: it runs for every path of every instance of a report."""
    out: list[Sig] = []
    stat, fstat = os.stat, os.fstat
    for rel in layout:
        try:
            st = stat(rel, dir_fd=fd) if rel else fstat(fd)
        except (OSError, ValueError):
            out.append(None)
            continue
        out.append((st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return out


_ABSENT = (-1, -1, -1, -1)


def _hash(sigs: Iterable[Sig]) -> int:
    """Python's hash of the signatures: ints only, so the same in every process (a missing
    path counts as ``_ABSENT``: before Python 3.12 the hash of None is its address)."""
    return hash(tuple(_ABSENT if s is None else s for s in sigs))


class Reading:
    """A snapshot and what it was read from: the paths checked (``layout``, relative to the
    instance dir, in reading order) and one hash of their signatures then. ``racy`` when one
    of them was too young to be trusted next time.

    Settled (:meth:`settle`), it keeps of its snapshot only the roll-up and the build record's
    kind, as one tuple of plain values (nothing for the garbage collector to walk), and makes
    that brief snapshot (:attr:`Snapshot.brief`) when asked for it.
    """

    __slots__ = ("layout", "digest", "racy", "_full", "_brief")

    def __init__(self, layout: tuple[str, ...], digest: int, snapshot: Snapshot, racy: bool) -> None:
        self.layout, self.digest, self.racy = layout, digest, racy
        self._full: Snapshot | None = snapshot
        self._brief: tuple[Any, ...] = ()  # token, instance dir, roll-up, build record's name and kind

    @property
    def snapshot(self) -> Snapshot:
        """The snapshot as read, or once settled a brief one (no records, no listings)."""
        if self._full is not None:
            return self._full
        token, instance_dir, rollup, record, kind = self._brief
        files = {instance_dir: {record: kind}} if kind is not None else {}
        return Snapshot(token, instance_dir, None, files, (), rollup)

    @property
    def settled(self) -> bool:
        return self._full is None

    def settle(self, record: str) -> None:
        """Drop the records and listings (``record``: the build record's name, whose kind is kept);
        not when some could not be read: the next report shows those warnings again."""
        snap = self._full
        if snap is None or snap.warnings:
            return
        kind = snap.files.get(snap.instance_dir, {}).get(record)
        self._brief = (snap.token, snap.instance_dir, snap.rollup(), record, kind)
        self._full = None

    def current(self) -> bool:
        """True when every path still has the signature it had when read (and none was racy)."""
        instance_dir = self._full.instance_dir if self._full is not None else self._brief[1]
        return not self.racy and digest(instance_dir, self.layout) == self.digest


class InstanceCache:
    """Snapshots of build instances, re-read only when a signature changed."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], Reading] = {}
        self._seen: set[tuple[str, str]] = set()
        self.reads = 0  # how many times an instance was read from its files

    def read(self, instance_dir: str, build: str) -> Snapshot:
        """The instance at ``instance_dir`` (records named after ``build``), from memory when
        unchanged and not settled (a settled snapshot has no records to build a row from)."""
        key = (instance_dir, build)
        self._seen.add(key)
        entry = self._entries.get(key)
        if entry is not None and not entry.settled and entry.current():
            return entry.snapshot
        entry = read_instance(instance_dir, build)
        self._entries[key] = entry
        self.reads += 1
        return entry.snapshot

    def peek(self, instance_dir: str, build: str) -> Snapshot:
        """The instance from memory when unchanged, perhaps settled (only its :meth:`Snapshot.rollup`
        and its build record's kind), else read again."""
        entry = self._entries.get((instance_dir, build))
        if entry is not None and entry.current():
            self._seen.add((instance_dir, build))
            return entry.snapshot
        return self.read(instance_dir, build)

    def keep(self, instance_dir: str, build: str, digest: int) -> None:
        """Keep an instance's reading through the next sweep without reading it: a row built
        from it was just found valid by ``digest``."""
        entry = self._entries.get((instance_dir, build))
        if entry is not None and entry.digest == digest:
            self._seen.add((instance_dir, build))

    def reading(self, instance_dir: str, build: str) -> Reading | None:
        """The last reading of an instance, if it was read."""
        return self._entries.get((instance_dir, build))

    def items(self) -> Iterable[tuple[tuple[str, str], Reading]]:
        """((instance dir, build), reading) of every instance kept."""
        return self._entries.items()

    def sweep(self) -> None:
        """Forget the instances not read since the last sweep (deleted, or no longer shown), and
        settle the rest: their rows are built (see :meth:`Reading.settle`)."""
        for key in self._entries.keys() - self._seen:
            del self._entries[key]
        for (_, build), entry in self._entries.items():
            entry.settle(f"{build}{STATUS_SUFFIX}")
        self._seen = set()

    def __len__(self) -> int:
        return len(self._entries)


def _live(snapshot: Snapshot) -> bool:
    """A snapshot holding a ``running`` record goes stale without any file changing (its process
    may die): it is never trusted on the next read."""
    summary = snapshot.summary
    if summary is None:
        return False
    records = [summary.build, *summary.flows]
    return any(r is not None and r.state == RunState.RUNNING for r in records)


def read_instance(instance_dir: str, build: str) -> Reading:
    """Read one build instance from its files (records named after ``build``)."""
    start = time.time_ns()
    checks: list[tuple[str, Sig]] = []

    def check(path: str) -> Sig:
        sig = signature(path)
        checks.append((path, sig))
        return sig

    warnings: list[str] = []
    _SINK.local.into = warnings
    try:
        check(instance_dir)
        own = listing(instance_dir)
        if own is None:
            snapshot = Snapshot(next(_tokens), instance_dir, None)
        else:
            snapshot = _read_instance(instance_dir, build, own, check)
    finally:
        _SINK.local.into = None
    if warnings:
        snapshot = Snapshot(snapshot.token, instance_dir, snapshot.summary, snapshot.files, tuple(warnings))
    limit = start - RACY_NS
    racy = any(s is not None and (s[2] >= limit or s[3] >= limit) for _, s in checks) or _live(snapshot)
    cut = len(instance_dir) + 1
    layout = _shared(tuple(p[cut:] if p != instance_dir else "" for p, _ in checks))
    return Reading(layout, _hash(s for _, s in checks), snapshot, racy)


def _read_instance(instance_dir: str, build: str, own: dict[str, str], check: Callable[[str], Sig]) -> Snapshot:
    """Read the build record, the step list and every current flow record of one instance."""
    sep = os.sep
    files = {instance_dir: own}
    build_path = f"{instance_dir}{sep}{build}{STATUS_SUFFIX}"
    own_path = Path(instance_dir)
    build_rec = read_status(build_path, own_path, drop=_UNSHOWN) if check(build_path) is not None else None
    base = f"{instance_dir}{sep}{FLOWS_SUBDIR}"
    flows: list[FlowResult] = []
    if check(base) is not None:
        steps_path = f"{base}{sep}{STEPS_FILE}"
        check(steps_path)
        steps = read_steps(steps_path)
        inner = listing(base) or {}
        files[base] = inner
        subdirs = (n for n, k in inner.items() if k == DIR or (k == LINK and os.path.isdir(f"{base}{sep}{n}")))
        for name in sorted(subdirs):
            if steps is not None and name not in steps:
                continue
            folder = f"{base}{sep}{name}"
            check(folder)
            names = listing(folder)
            if names is None:
                continue
            files[folder] = names
            folder_path = None
            for fname in sorted(n for n, k in names.items() if k != DIR and n.endswith(STATUS_SUFFIX)):
                path = f"{folder}{sep}{fname}"
                if check(path) is None:
                    continue
                folder_path = folder_path or Path(folder)
                rec = read_status(path, folder_path, drop=_UNSHOWN)
                if rec is not None:
                    flows.append(rec)
    summary = roll_up(own_path, build_rec, tuple(sort_flows(flows)))
    return Snapshot(next(_tokens), instance_dir, summary, files)
