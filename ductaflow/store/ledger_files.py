"""The ledger's files on disk: their names and columns, which of them are live, and one
exact read of them all in a single DuckDB scan.

Writers add small files (level 0). A merge (:mod:`ductaflow.store.ledger_compact`) writes one
larger file whose Parquet metadata names the files it replaces, then changes ``.generation``,
and only then deletes those files. So a reader skips every file that a present merged file
replaces, and reads again when ``.generation`` changed while it read: it never counts a
record twice nor misses one, whether merges run beside it or one died half way.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ductaflow.errors import DuctaflowError
from ductaflow.store.atomic import atomic_write_text
from ductaflow.store.layout import LEDGER_DIR
from ductaflow.store.locks import file_lock

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Column order of a ledger record (all present in every file; missing values are null).
COLUMNS = (
    "run_id",
    "kind",
    "event",
    "flow",
    "build",
    "instance",
    "instance_dir",
    "scenario",
    "status",
    "started",
    "finished",
    "duration",
    "peak_rss_mb",
    "warning_count",
    "error_type",
    "error_message",
    "fingerprint",
    "config_hash",
    "ductaflow_version",
    "python_version",
    "git_commit",
    "host",
    "reason",
    "sweep",
    # provenance (status schema 6); older ledger files read these as null
    "python_implementation",
    "platform",
    "env_hash",
    "git_branch",
    "git_dirty",
    "git_diff_hash",
    "user",
    # failures and attempts (status schema 8); older ledger files read these as null
    "failure_kind",
    "phase",
    "attempt",
)
#: DuckDB types of the columns that are not VARCHAR.
SQL_TYPES = {
    "duration": "DOUBLE", "peak_rss_mb": "DOUBLE", "warning_count": "BIGINT", "git_dirty": "BOOLEAN",
    "attempt": "BIGINT",
}  # fmt: skip

#: Changed by every merge after its file is in place and before it deletes anything.
GENERATION = ".generation"
#: Held by whoever merges (and, as a last resort, by a reader that keeps losing races).
MERGE_LOCK = ".compact.lock"
#: Key of a merged file's Parquet metadata: a JSON list of the file names it replaces.
REPLACES_KEY = "ductaflow.replaces"

_MERGED = re.compile(r"-compacted-(?:L(\d+)-)?[0-9a-f]+\.parquet$")
_OPTIMISTIC_READS = 5  # then the reader waits for the merge lock (when it may take it)
_READS = 50


def ledger_dir(runs_root: str | Path) -> Path:
    return Path(runs_root) / LEDGER_DIR


def level(path: Path) -> int:
    """0 for a writer's file; a merged file's level from its name (1 for one named before levels)."""
    found = _MERGED.search(path.name)
    return 0 if found is None else int(found.group(1) or 1)


def merged_name(at_level: int) -> str:
    return f"{time.strftime('%Y%m%dT%H%M%S')}-compacted-L{at_level}-{uuid.uuid4().hex[:12]}.parquet"


def generation(folder: Path) -> str:
    try:
        return (folder / GENERATION).read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""


def new_generation(folder: Path) -> None:
    """Tell readers that files may be deleted from now on: any read spanning this reads again."""
    atomic_write_text(folder / GENERATION, uuid.uuid4().hex)


def parquet_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.parquet")) if folder.is_dir() else []


class Duck:
    """A DuckDB connection made on first use (a listing without merged files needs none): a
    cursor on one database per process, since a new database costs ~20 ms, a cursor nothing."""

    def __init__(self) -> None:
        self._con: duckdb.DuckDBPyConnection | None = None

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            self._con = _database().cursor()
        return self._con

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None


_DATABASE: dict[int, duckdb.DuckDBPyConnection] = {}  # process id -> its in-memory database
_DATABASE_LOCK = threading.Lock()


def _database() -> duckdb.DuckDBPyConnection:
    """This process's in-memory database. A forked child makes its own and leaves its parent's
    alone (DuckDB's threads do not survive a fork: even closing that one could hang)."""
    import duckdb  # heavy: deferred until a ledger file is opened

    with _DATABASE_LOCK:
        pid = os.getpid()
        if pid not in _DATABASE:
            _DATABASE[pid] = duckdb.connect()
        return _DATABASE[pid]


@dataclass
class Listing:
    """The ledger folder at one moment: the files to read, and those a merged file replaces."""

    live: list[Path]
    replaced: list[Path]
    unreadable: dict[Path, str]


def listing(duck: Duck, folder: Path) -> Listing:
    """Every Parquet file in ``folder``, split into live and replaced ones."""
    files = parquet_files(folder)
    names, bad = _replaced_names(duck, [p for p in files if level(p) > 0])
    live = [p for p in files if p.name not in names and p not in bad]
    return Listing(live, [p for p in files if p.name in names], bad)


def _replaced_names(duck: Duck, merged: list[Path]) -> tuple[set[str], dict[Path, str]]:
    """The names the ``merged`` files say they replace; a merged file that cannot be read is
    returned apart (it replaces nothing then, so its sources, if still there, are read)."""
    if not merged:
        return set(), {}
    sql = "SELECT value FROM parquet_kv_metadata(?) WHERE key = ?"
    rows, bad = each_readable(merged, lambda ps: duck.con.execute(sql, [[str(p) for p in ps], REPLACES_KEY]).fetchall())
    names: set[str] = set()
    for (value,) in rows or []:
        try:
            listed = json.loads(value)
        except ValueError:
            continue
        if isinstance(listed, list):
            names.update(n for n in listed if isinstance(n, str))
    return names, bad


def each_readable(
    files: list[Path], action: Callable[[list[Path]], T], probe: Callable[[list[Path]], object] | None = None
) -> tuple[T | None, dict[Path, str]]:
    """``action`` over all ``files``; when DuckDB fails, over those ``probe`` (default: the
    action) can read alone: a torn or foreign file must not hide the others. Returns the
    result (None when no file is readable) and the files left out, with why."""
    if not files:
        return None, {}
    import duckdb  # heavy: deferred with the scan that needs it

    try:
        return action(files), {}
    except duckdb.Error:
        pass
    bad: dict[Path, str] = {}
    for path in files:
        try:
            (probe or action)([path])
        except duckdb.Error as exc:
            bad[path] = str(exc).strip().splitlines()[0]
    good = [p for p in files if p not in bad]
    return (action(good) if good else None), bad


def relation(duck: Duck, files: Iterable[Path]) -> duckdb.DuckDBPyRelation:
    """One scan of ``files`` with exactly the ledger's columns and types (missing ones null)."""
    rel = duck.con.read_parquet([str(p) for p in files], union_by_name=True)
    present = set(rel.columns)
    exprs = []
    for column in COLUMNS:
        source = _quote(column) if column in present else "NULL"
        exprs.append(f"CAST({source} AS {SQL_TYPES.get(column, 'VARCHAR')}) AS {_quote(column)}")
    return rel.project(", ".join(exprs))


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def read_table(runs_root: str | Path) -> pa.Table | None:
    """Every live record as one Arrow table (files in name order), or None for an empty ledger.
    Unreadable files are skipped with a warning naming them."""
    folder = ledger_dir(runs_root)
    duck = Duck()
    try:
        with ExitStack() as stack:
            for attempt in range(_READS):
                if attempt == _OPTIMISTIC_READS:  # merges keep finishing under us: hold them off
                    _hold_merges(stack, folder)
                read = _read_once(duck, folder)
                if read is not None:
                    break
                time.sleep(0.002 * attempt)
            else:
                raise DuctaflowError(f"the ledger in {folder} changed during each of {_READS} reads")
    finally:
        duck.close()
    table, unreadable = read
    for path, why in unreadable.items():
        log.warning("skipping unreadable ledger file %s: %s", path, why)
    return table


def _read_once(duck: Duck, folder: Path) -> tuple[pa.Table | None, dict[Path, str]] | None:
    """List the live files and scan them; None when files may have been deleted meanwhile."""
    import duckdb  # heavy: deferred with the scan that needs it

    before = generation(folder)
    try:
        found = listing(duck, folder)
        table, bad = each_readable(found.live, lambda fs: relation(duck, fs).to_arrow_table())
    except duckdb.Error:  # a file went between its probe and the scan: read again
        return None
    unreadable = {**found.unreadable, **bad}
    if generation(folder) != before or not all(p.exists() for p in unreadable):
        return None  # files went (a merge ended, or a hand removed them): this listing is stale
    return table, unreadable


def _hold_merges(stack: ExitStack, folder: Path) -> None:
    try:
        stack.enter_context(file_lock(folder / MERGE_LOCK, timeout=60))
    except OSError as exc:  # a read-only runs directory: keep reading optimistically
        log.debug("cannot take the ledger merge lock in %s: %s", folder, exc)


def sql_text(value: Any) -> str:
    """``value`` as a single-quoted SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"
