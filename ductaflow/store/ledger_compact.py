"""Merging the ledger's small files as it grows, so a read stays one quick scan of a few files
without anyone running ``ductaflow compact``.

Each new ledger file adds one byte to ``.appends`` (an O(1) count shared by all processes).
When MERGE_AT have gathered, the writer that sees it merges, unless another process is
merging: MERGE_AT files of one level become one file of the next level (a log-structured
merge). A record is rewritten once per level, and a ledger of n records keeps fewer than
MERGE_AT files per level, in about log(n) / log(MERGE_AT) levels.

One merge, under the merge lock: write the merged file under a temporary name and rename it
into place, its Parquet metadata naming its sources; change ``.generation``; delete the
sources. A crash anywhere leaves the sources alone, or the merged file plus some of its
sources, which readers skip (:mod:`ductaflow.store.ledger_files`) and the next merge deletes.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections import defaultdict
from pathlib import Path

from ductaflow.store.atomic import atomic_target
from ductaflow.store.ledger_files import (
    MERGE_LOCK,
    REPLACES_KEY,
    Duck,
    each_readable,
    level,
    listing,
    merged_name,
    new_generation,
    parquet_files,
    relation,
    sql_text,
)
from ductaflow.store.locks import file_lock

log = logging.getLogger(__name__)

#: Files of one level that are merged into one file of the next level.
MERGE_AT = 32
#: One byte per ledger file written since the last merge began.
APPENDS = ".appends"


def note_append(folder: Path) -> bool:
    """Count one new file in ``folder``; True when a merge is due: MERGE_AT files since the last
    one, or no count yet (a new ledger, or one written before counting: maybe thousands of files)."""
    path = folder / APPENDS
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
    try:
        fd = os.open(path, flags | os.O_EXCL, 0o666)
        fresh = True
    except FileExistsError:
        fd = os.open(path, flags, 0o666)
        fresh = False
    try:
        os.write(fd, b".")  # O_APPEND: writers in several processes each add their byte
        return fresh or os.fstat(fd).st_size >= MERGE_AT
    finally:
        os.close(fd)


def _reset_count(folder: Path) -> None:
    """Zero the count before listing: a file written meanwhile is counted again (a merge comes
    a little early), never forgotten."""
    try:
        os.truncate(folder / APPENDS, 0)
    except FileNotFoundError:
        pass


def compact_if_due(folder: Path) -> Path | None:
    """Merge every level holding MERGE_AT files; returns the last file made, if any. Returns at
    once when another process is merging: it has reset the count and merges what is there."""
    with file_lock(folder / MERGE_LOCK, timeout=0) as held:
        if not held:
            return None
        _reset_count(folder)
        if max(map(len, _by_level(parquet_files(folder)).values()), default=0) < MERGE_AT:
            return None  # decided from names alone: DuckDB is not even imported
        duck = Duck()
        try:
            return _merge_levels(duck, folder)
        finally:
            duck.close()


def compact_all(folder: Path) -> Path | None:
    """Merge every live ledger file into one, waiting for a merge under way; returns its path
    (the only file when there is one, None when the ledger is empty)."""
    if not folder.is_dir():
        return None
    with file_lock(folder / MERGE_LOCK):
        _reset_count(folder)
        duck = Duck()
        try:
            live = _clean(duck, folder)
            if len(live) < 2:
                return live[0] if live else None
            return _merge(duck, folder, live, max(level(p) for p in live) + 1)
        finally:
            duck.close()


def _by_level(files: list[Path]) -> dict[int, list[Path]]:
    levels: dict[int, list[Path]] = defaultdict(list)
    for path in files:
        levels[level(path)].append(path)
    return levels


def _merge_levels(duck: Duck, folder: Path) -> Path | None:
    """Merge the full levels, lowest first (a merge may fill the level above it)."""
    levels = _by_level(_clean(duck, folder))
    made = None
    at = 0
    while at <= max(levels, default=-1):
        if len(levels[at]) >= MERGE_AT:
            merged = _merge(duck, folder, levels.pop(at), at + 1)
            if merged is not None:
                levels[at + 1].append(merged)
                made = merged
        at += 1
    return made


def _clean(duck: Duck, folder: Path) -> list[Path]:
    """The live files, once what a merge that died left behind is gone: the files a present
    merged file replaces, and its temporary file (only a merger writes those, and we hold the lock)."""
    for tmp in folder.glob(".*-compacted-*.tmp"):
        tmp.unlink(missing_ok=True)
    found = listing(duck, folder)
    if found.replaced:
        new_generation(folder)  # before deleting: a reader that listed them reads again
        for path in found.replaced:
            path.unlink(missing_ok=True)
    for path, why in found.unreadable.items():
        log.warning("leaving unreadable ledger file %s in place: %s", path, why)
    return found.live


def _merge(duck: Duck, folder: Path, sources: list[Path], at_level: int) -> Path | None:
    """Merge the readable ``sources`` into one file of ``at_level`` and delete them; None when
    none was readable."""
    made, held = write_merged(duck, folder, sources, at_level)
    if made is None:
        return None
    new_generation(folder)  # the merged file is in place: from here its sources may go
    for path in held:
        path.unlink(missing_ok=True)
    log.debug("merged %d ledger files into %s", len(held), made.name)
    return made


def write_merged(duck: Duck, folder: Path, sources: list[Path], at_level: int) -> tuple[Path | None, list[Path]]:
    """A merge's first half: the readable ``sources`` written as one new file of ``at_level``
    (under a temporary name, then renamed) whose metadata names them. Returns it and the
    sources it holds; unreadable ones are left in place with a warning. Until the second half
    deletes the sources, readers skip them."""
    target = folder / merged_name(at_level)

    def write(files: list[Path]) -> list[Path]:
        names = json.dumps(sorted(p.name for p in files))
        view = f"merging_{uuid.uuid4().hex}"  # views are seen by every cursor of the process's database
        relation(duck, files).create_view(view)
        try:
            with atomic_target(target) as tmp:
                options = f"FORMAT parquet, KV_METADATA {{{sql_text(REPLACES_KEY)}: {sql_text(names)}}}"
                duck.con.execute(f"COPY {view} TO {sql_text(tmp)} ({options})")
        finally:
            duck.con.execute(f"DROP VIEW IF EXISTS {view}")
        return files

    held, bad = each_readable(sources, write, probe=lambda fs: relation(duck, fs).fetchall())
    for path, why in bad.items():
        log.warning("leaving unreadable ledger file %s in place: %s", path, why)
    return (None, []) if held is None else (target, held)
