"""Ask the runs directory questions: latest state per instance, and SQL over runs and results.

Read-only. Every source is a file the runs left on disk (status records, ledger Parquet,
``<build>/results.parquet``); an unreadable one is skipped with a warning naming it.
"""

from __future__ import annotations

import logging
import os
import socket
import textwrap
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ductaflow.report.instances import read_instance
from ductaflow.report.status_cache import SummaryCache, summary_row
from ductaflow.store.layout import STATUS_SUFFIX, artifact_path
from ductaflow.store.locks import is_held
from ductaflow.store.records import read_status, subdirs

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

STATUS_COLUMNS = ("flow", "instance", "status", "state", "duration", "finished", "worst_flow", "error", "dir")


def status_rows(runs_root: str | Path = "runs", sweep: str | None = None) -> list[dict[str, Any]]:
    """The rows of :func:`latest_status` as dicts (no pandas): what ``ductaflow status`` prints
    (with ``sweep``, only instances whose build record ran in that sweep).

    Rows whose files have not changed since the last listing come from the runs root's
    status cache (:mod:`ductaflow.report.status_cache`); the others are read from their records.
    """
    root = Path(runs_root)
    cache = SummaryCache(root)
    rows: list[dict[str, Any]] = []
    for flow in (n for n in subdirs(root) if not n.startswith(".")):
        for name in subdirs(root / flow):
            rel = f"{flow}/{name}"
            inst = os.path.join(root, flow, name)
            row = cache.get(rel, inst)
            if row is None:
                if not os.path.exists(os.path.join(inst, f"{flow}{STATUS_SUFFIX}")):
                    continue
                reading = read_instance(inst, flow)
                row = summary_row(reading.snapshot)
                cache.put(rel, inst, reading, row)
            if row["state"] == "running" and _stale(Path(inst), flow):
                row = {**row}
                row.update(state="stale", status=row["status"] or "red", error=row["error"] or "run did not finish")
            if sweep is None or row.get("sweep") == sweep:
                rows.append({"flow": flow, "instance": name, **row, "dir": rel})
    cache.save()
    return rows


def _stale(instance_dir: Path, flow: str) -> bool:
    """A record still ``running`` after reading is owned by a live process on this host (a dead
    one reads ``gone``), or comes from another host: there, only its instance lock tells."""
    rec = read_status(artifact_path(instance_dir, flow, "status"))
    if rec is None or rec.host == socket.gethostname():
        return False
    return not is_held(instance_dir, flow)


def latest_status(runs_root: str | Path = "runs") -> pd.DataFrame:
    """One row per top-level instance (``<runs>/<flow>/<instance>/``), builds rolled up.

    A record left ``running`` by a process that died on this host reads ``gone``; one from
    another host whose instance lock no process holds is shown ``stale``. Both are red and
    run again.
    """
    import pandas as pd  # heavy: deferred until a table is asked for

    return pd.DataFrame(status_rows(runs_root), columns=list(STATUS_COLUMNS))


def results_table(runs_root: str | Path = "runs") -> pd.DataFrame:
    """Every build's ``results.parquet`` stacked, with a ``build`` column."""
    # heavy: deferred until a query or a lock check needs it
    import pandas as pd

    frames = []
    for path in sorted(Path(runs_root).glob("*/results.parquet")):
        try:
            frames.append(pd.read_parquet(path).assign(build=path.parent.name))
        except Exception as exc:  # noqa: BLE001 - one torn file must not hide the others
            log.warning("skipping unreadable results table %s: %s", path, exc)
    if not frames:
        return pd.DataFrame({"build": pd.Series(dtype="object")})
    return pd.concat(frames, ignore_index=True)


def run_query(sql: str, runs_root: str | Path = "runs") -> pd.DataFrame:
    """Run DuckDB ``sql`` over the views ``runs`` (the ledger) and ``results``."""
    # heavy: deferred until a query or a lock check needs it
    import duckdb

    # heavy: deferred until a query or a lock check needs it
    from ductaflow.errors import DuctaflowError
    from ductaflow.store.ledger import read  # deferred with the line above

    runs_df = read(runs_root)
    results_df = results_table(runs_root)
    con = duckdb.connect()
    try:
        con.register("runs", runs_df)
        con.register("results", results_df)
        return con.execute(sql).df()
    except duckdb.Error as exc:
        raise DuctaflowError(f"query failed: {exc}".splitlines()[0]) from None
    finally:
        con.close()


_LIGHTS = {"green": "🟢", "orange": "🟠", "red": "🔴"}
_HEAD = ("", "flow", "instance", "state", "duration", "finished", "worst flow / error")


def _width(text: str) -> int:
    """Terminal columns of ``text``: wide (emoji, CJK) characters take two, combining ones none."""
    if text.isascii():
        return len(text)
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def status_table(rows: list[dict[str, Any]], width: int = 200) -> list[str]:
    """``rows`` of :func:`status_rows` as aligned text lines (header first), the last column
    wrapped to ``width``. Plain strings: a table library took seconds at 10,000 rows."""
    cells = [
        (
            _LIGHTS.get(str(r["status"]), "⚪"),
            str(r["flow"]),
            str(r["instance"]),
            str(r["state"]),
            f"{r['duration']:.1f}s" if isinstance(r["duration"], (int, float)) else "-",
            str(r["finished"] or "-")[:19].replace("T", " "),
            str(r["error"] or r["worst_flow"] or ""),
        )
        for r in rows
    ]
    widths = [max([_width(h)] + [_width(c[i]) for c in cells]) for i, h in enumerate(_HEAD[:-1])]
    indent = 1 + sum(widths) + 2 * len(widths)
    room = max(20, width - indent)
    lines = []
    for line in [_HEAD, *cells]:
        head = "  ".join(c + " " * (w - _width(c)) for c, w in zip(line, widths, strict=False))
        last = textwrap.wrap(line[-1], room, break_on_hyphens=False) or [""]
        lines.append(f" {head}  {last[0]}".rstrip())
        lines.extend((" " * indent + more).rstrip() for more in last[1:])
    return lines
