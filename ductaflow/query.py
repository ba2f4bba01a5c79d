"""Ask the runs directory questions: latest state per instance, and SQL over runs and results.

Read-only. Every source is a file the runs left on disk (status records, ledger Parquet,
``<build>/results.parquet``); an unreadable one is skipped with a warning naming it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ductaflow.incremental import is_held
from ductaflow.records import STATUS_SUFFIX, summarize_instance

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

STATUS_COLUMNS = ("flow", "instance", "status", "state", "duration", "finished", "worst_flow", "error", "dir")


def latest_status(runs_root: str | Path = "runs") -> pd.DataFrame:
    """One row per top-level instance (``<runs>/<flow>/<instance>/``), builds rolled up.

    A record that says "running" while no process holds its instance lock is shown as
    ``stale``: the run that wrote it is gone (killed, power loss) and will be re-run.
    """
    import pandas as pd

    root = Path(runs_root)
    rows: list[dict[str, Any]] = []
    flow_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []
    for flow_dir in flow_dirs:
        for inst in sorted(p for p in flow_dir.iterdir() if p.is_dir()):
            if not (inst / f"{flow_dir.name}{STATUS_SUFFIX}").exists():
                continue
            summary = summarize_instance(inst, flow_dir.name)
            rec = summary.build
            state = rec.state if rec else "unknown"
            if state == "running" and not is_held(inst, flow_dir.name):
                state = "stale"
            rows.append(
                {
                    "flow": flow_dir.name,
                    "instance": inst.name,
                    "status": summary.status.value if summary.status else ("red" if state == "stale" else None),
                    "state": state,
                    "duration": rec.duration if rec else None,
                    "finished": rec.finished if rec else None,
                    "worst_flow": summary.worst_flow,
                    "error": summary.error or ("run did not finish" if state == "stale" else None),
                    "dir": inst.relative_to(root).as_posix(),
                }
            )
    return pd.DataFrame(rows, columns=list(STATUS_COLUMNS))


def results_table(runs_root: str | Path = "runs") -> pd.DataFrame:
    """Every build's ``results.parquet`` stacked, with a ``build`` column."""
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
    import duckdb

    from ductaflow.errors import DuctaflowError
    from ductaflow.ledger import read

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
