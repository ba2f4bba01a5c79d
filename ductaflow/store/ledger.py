"""The run ledger: one small Parquet file per execution record, queried with DuckDB.

Files are written under a temporary name and renamed into place, and never rewritten, so
concurrent writers and crashes lose nothing. Every MERGE_AT new files, the writer merges
them into larger ones (:mod:`ductaflow.store.ledger_compact`), so reading stays one quick
scan; ``compact`` merges them all into one. Readers stay exact through merges and crashes
(:mod:`ductaflow.store.ledger_files`).
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ductaflow._version import __version__
from ductaflow.store.atomic import atomic_target
from ductaflow.store.ledger_compact import compact_all, compact_if_due, note_append
from ductaflow.store.ledger_files import COLUMNS, SQL_TYPES, ledger_dir, read_table

if TYPE_CHECKING:
    import pandas as pd

    from ductaflow.core.provenance import Provenance

log = logging.getLogger(__name__)


def _normalise(record: Mapping[str, Any]) -> dict[str, Any]:
    """One row with every column; a NaN or infinite number is null (JSON has no NaN)."""
    rec = {c: record.get(c) for c in COLUMNS}
    for key, value in rec.items():
        if isinstance(value, float) and not math.isfinite(value):
            rec[key] = None
    rec["run_id"] = rec["run_id"] or uuid.uuid4().hex
    rec["ductaflow_version"] = rec["ductaflow_version"] or __version__
    rec["python_version"] = rec["python_version"] or sys.version.split()[0]
    rec["host"] = rec["host"] or socket.gethostname()
    if isinstance(rec["scenario"], Mapping):
        rec["scenario"] = json.dumps(rec["scenario"], sort_keys=True, ensure_ascii=False)
    return rec


def _schema() -> Any:
    # heavy: deferred until the ledger is written or read
    import pyarrow as pa

    types = {
        "duration": pa.float64(),
        "peak_rss_mb": pa.float64(),
        "warning_count": pa.int64(),
        "git_dirty": pa.bool_(),
        "attempt": pa.int64(),
    }
    return pa.schema([(c, types.get(c, pa.string())) for c in COLUMNS])


def append(runs_root: str | Path, records: Iterable[Mapping[str, Any]]) -> Path | None:
    """Write ``records`` as one new Parquet file in the ledger; returns its path. Then, once
    MERGE_AT files have gathered, merges them into a larger one (a failed merge only warns)."""
    rows = [_normalise(r) for r in records]
    if not rows:
        return None
    folder = ledger_dir(runs_root)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:12]}.parquet"
    with atomic_target(folder / name) as tmp:
        if "pyarrow" in sys.modules:  # loaded by papermill in any process that ran a flow
            _write_with_pyarrow(rows, tmp)
        else:  # a process that only skipped: DuckDB imports in ~0.07 s, pyarrow and numpy in ~0.16 s
            _write_with_duckdb(rows, tmp)
    _merge_if_due(folder)
    return folder / name


def _merge_if_due(folder: Path) -> None:
    """Count the file just written; merge when MERGE_AT have gathered (O(1) otherwise)."""
    try:
        if note_append(folder):
            compact_if_due(folder)
    except Exception as exc:  # noqa: BLE001 - the records are written; a merge can wait for the next append
        log.warning("could not merge the ledger files in %s: %s", folder, exc)


def _write_with_pyarrow(rows: list[dict[str, Any]], path: Path) -> None:
    """Rows to Parquet through Arrow's JSON reader: building a table from Python objects
    (``Table.from_pylist``, ``pa.array``) imports pandas (~0.3 s), the reader does not."""
    import pyarrow.json as pj  # heavy: deferred, and only when pyarrow is loaded anyway
    import pyarrow.parquet as pq  # deferred with the line above

    lines = "".join(json.dumps(row, ensure_ascii=False, default=str) + "\n" for row in rows)
    options = pj.ParseOptions(explicit_schema=_schema(), unexpected_field_behavior="error")
    pq.write_table(pj.read_json(io.BytesIO(lines.encode("utf-8")), parse_options=options), path)


_DUCK: list[Any] = []  # one in-memory DuckDB connection per process, made on first use
_DUCK_LOCK = threading.Lock()


def _write_with_duckdb(rows: list[dict[str, Any]], path: Path) -> None:
    """The same Parquet file as the pyarrow path (same columns and types), via DuckDB. The
    connection is kept: opening one costs more than the write (a loop of flows, measured)."""
    # heavy: deferred until the ledger is written or read
    import duckdb

    with _DUCK_LOCK:
        if not _DUCK:
            columns = ", ".join(f'"{c}" {SQL_TYPES.get(c, "VARCHAR")}' for c in COLUMNS)
            con = duckdb.connect()
            con.execute(f"CREATE TABLE rec ({columns})")
            _DUCK.append(con)
        con = _DUCK[0]
        con.execute("DELETE FROM rec")
        con.executemany(
            f"INSERT INTO rec VALUES ({', '.join('?' * len(COLUMNS))})",
            [[row[c] for c in COLUMNS] for row in rows],
        )
        con.execute("COPY rec TO ? (FORMAT parquet)", [str(path)])


def append_run(ctx: Mapping[str, Any], result: Any, event: str) -> None:
    """Append one flow execution (``event`` "run" or "skip") to the ledger; never raises."""
    append_runs(ctx, [(result, event, ctx.get("scenario"))])


def append_runs(ctx: Mapping[str, Any], items: Iterable[tuple[Any, str, Any]]) -> None:
    """Append (result, event, scenario) records as ONE ledger file; never raises.

    When the context names a ``ledger_spool`` directory (a build run by the conductor), the
    records go there as JSON instead, for the conductor alone to move into the ledger.
    """
    runs_root = Path(ctx["runs_root"])
    try:
        records = [_run_record(ctx, runs_root, r, e, sc) for r, e, sc in items]
        if ctx.get("ledger_spool"):
            _spool(Path(ctx["ledger_spool"]), records)
        else:
            append(runs_root, records)
    except Exception as exc:  # noqa: BLE001 - the ledger is a record of runs, never a reason to fail one
        log.warning("could not append to the ledger under %s: %s", runs_root, exc)


def _spool(folder: Path, records: list[dict[str, Any]]) -> None:
    """Park records as one JSON file (written then renamed) until the conductor ingests them."""
    name = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:12]}.json"
    tmp = folder / f".{name}.tmp"
    text = json.dumps([_normalise(r) for r in records], default=str)
    for attempt in range(5):  # another conductor may remove the (empty) folder between mkdir and write
        folder.mkdir(parents=True, exist_ok=True)
        try:
            tmp.write_text(text, encoding="utf-8")
            break
        except FileNotFoundError:
            if attempt == 4:
                raise
    os.replace(tmp, folder / name)  # the folder cannot go now: the file is in it


def _take(path: Path) -> int | None:
    """An open descriptor on spool file ``path`` that this process alone holds (an exclusive
    ``flock``), or None when another ingest holds or has already taken it. A lock dies with
    its process, so a crash mid-ingest leaves the file for the next one."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except (ImportError, OSError):
        pass  # no flock here: a lone conductor needs none
    try:
        current = os.stat(path).st_ino == os.fstat(fd).st_ino  # not ingested and removed meanwhile
    except FileNotFoundError:
        current = False
    if not current:
        os.close(fd)
        return None
    return fd


def ingest_spool(runs_root: str | Path, folder: Path) -> int:
    """Move the records parked in ``folder`` into the ledger as one file; returns how many.

    A spool file that cannot be read is left in place with a warning naming it.
    """
    records: list[dict[str, Any]] = []
    taken: list[tuple[Path, int]] = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        fd = _take(path)  # of two conductors ingesting at once, one takes each file
        if fd is None:
            continue
        try:
            with os.fdopen(os.dup(fd), encoding="utf-8") as handle:
                rows = json.loads(handle.read())
            if not isinstance(rows, list):
                raise ValueError("not a list of records")
        except (OSError, ValueError) as exc:
            log.warning("leaving unreadable ledger spool file %s: %s", path, exc)
            os.close(fd)
            continue
        records.extend(r for r in rows if isinstance(r, dict))
        taken.append((path, fd))
    try:
        if records:
            append(runs_root, records)
        for path, _ in taken:
            path.unlink(missing_ok=True)
    finally:
        for _, fd in taken:
            os.close(fd)
    try:
        folder.rmdir()
    except OSError:
        pass
    return len(records)


def _run_record(ctx: Mapping[str, Any], runs_root: Path, result: Any, event: str, scenario: Any) -> dict[str, Any]:
    try:
        rel = result.execution_dir.relative_to(runs_root).as_posix()
    except ValueError:
        rel = str(result.execution_dir)
    parts = result.fingerprint_parts or {}
    kind = "build" if parts.get("flows") else "flow"
    err = result.error
    rec = {
        "kind": kind,
        "event": event,
        "flow": result.flow,
        "build": ctx.get("build") or (result.flow if kind == "build" else None),
        "instance": result.instance,
        "instance_dir": rel,
        "scenario": scenario,
        "status": result.status.value,
        "started": result.started,
        "finished": result.finished,
        "duration": result.duration,
        "peak_rss_mb": result.peak_rss_mb,
        "warning_count": len(result.warnings),
        "error_type": err.type if err else None,
        "error_message": err.message if err else None,
        "fingerprint": result.fingerprint,
        "config_hash": parts.get("config"),
        "reason": "up to date" if event == "skip" else "; ".join(result.reasons) or None,
        "sweep": ctx.get("sweep") or getattr(result, "sweep", None),
        "failure_kind": result.kind,
        "phase": result.phase,
        "attempt": result.attempt,
        **_provenance_fields(result.provenance),
    }
    if event == "skip":
        rec["started"] = rec["finished"] = _now()
        rec["duration"] = 0.0
        rec["peak_rss_mb"] = None
    return rec


def _provenance_fields(prov: Provenance | None) -> dict[str, Any]:
    """The ledger columns of a run's provenance (none for a record without one: the writer's
    version, Python and host are filled in as before)."""
    if prov is None:
        return {}
    git = prov.git
    return {
        "ductaflow_version": prov.ductaflow_version,
        "python_version": prov.python_version,
        "python_implementation": prov.python_implementation,
        "platform": prov.platform,
        "env_hash": prov.env_hash,
        "host": prov.host,
        "user": prov.user,
        "git_commit": git.commit if git else None,
        "git_branch": git.branch if git else None,
        "git_dirty": git.dirty if git else None,
        "git_diff_hash": git.diff_hash if git else None,
    }


def _now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def read(runs_root: str | Path = "runs") -> pd.DataFrame:
    """Every ledger record once, oldest first; unreadable files are skipped with a warning."""
    import pandas as pd  # heavy: deferred until the ledger is read

    table = read_table(runs_root)
    if table is None:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in COLUMNS})
    df = table.to_pandas().drop_duplicates("run_id")  # a spool ingested twice (killed before removing it)
    return df.sort_values(["started", "finished"], na_position="first", kind="stable").reset_index(drop=True)


def compact(runs_root: str | Path = "runs") -> Path | None:
    """Merge every ledger file into one, atomically; the merged originals are removed.
    Unreadable files are left in place with a warning. Returns the file, None when empty."""
    return compact_all(ledger_dir(runs_root))
