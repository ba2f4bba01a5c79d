"""Results recorded by a flow: scalar metrics and named tables, as Parquet in its instance dir.

``record(total_trips=1234)`` inside a flow writes ``<flow>_metrics.parquet`` (one row; later
calls add or replace columns); ``record_table("od", df)`` writes ``<flow>_table_od.parquet``.
The conductor joins every flow's metrics onto its scenario row.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from ductaflow.core.config import to_jsonable
from ductaflow.core.context import RunContext
from ductaflow.core.names import validate_name
from ductaflow.errors import ConfigError, DuctaflowError
from ductaflow.store.atomic import atomic_target
from ductaflow.store.layout import FLOWS_SUBDIR, METRICS_SUFFIX, metrics_path, table_path
from ductaflow.store.records import current_steps

log = logging.getLogger(__name__)



def _flow_name() -> str:
    """The running flow: named by the run context ductaflow gives its kernels; the script's
    name in script mode."""
    ctx = RunContext.inherited()
    name = ctx.flow if ctx is not None else None
    if not name and sys.argv and sys.argv[0].endswith(".py"):
        name = Path(sys.argv[0]).stem
    return name or "flow"


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    with atomic_target(path) as tmp:
        df.to_parquet(tmp, index=False)


def _metrics_row(path: Path) -> dict[str, Any]:
    """The one row of a metrics file, as plain Python values (read with Arrow alone: through
    pandas it cost ~2.5 ms a file, and a no-op re-run reads every scenario's)."""
    # heavy: pyarrow, deferred until a metrics file is read
    import pyarrow.parquet as pq

    rows = pq.read_table(path).to_pylist()
    if not rows:
        raise ValueError(f"{path} holds no row")
    return rows[0]


def record(**metrics: Any) -> dict[str, Any]:
    """Store scalar metrics for this flow run (numbers, strings, booleans); returns them all."""
    clean: dict[str, Any] = {}
    for key, value in metrics.items():
        try:
            value = to_jsonable(value, f"metric '{key}'")
        except ConfigError as exc:
            raise DuctaflowError(str(exc)) from None
        if isinstance(value, (dict, list)):
            raise DuctaflowError(f"metric '{key}' must be a scalar; use record_table for tables")
        clean[key] = value
    path = metrics_path(Path.cwd(), _flow_name())
    current: dict[str, Any] = {}
    if path.exists():
        current = _metrics_row(path)
    current.update(clean)
    _write_parquet(pd.DataFrame([current]), path)
    return current


def record_table(name: str, df: pd.DataFrame) -> Path:
    """Store a DataFrame result for this flow run as ``<flow>_table_<name>.parquet``."""
    validate_name(name, "table name")
    if not isinstance(df, pd.DataFrame):
        raise DuctaflowError(f"record_table('{name}', ...) needs a pandas DataFrame, got {type(df).__name__}")
    path = table_path(Path.cwd(), _flow_name(), name)
    _write_parquet(df, path)
    return path


def read_metrics(directory: Path) -> dict[str, dict[str, Any]]:
    """Metrics of every flow recorded in ``directory``: {flow: {metric: value}}."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob(f"*{METRICS_SUFFIX}")):
        try:
            row = _metrics_row(path)
        except Exception:  # noqa: BLE001 - a torn file is skipped like a torn status record
            continue
        out[path.name[: -len(METRICS_SUFFIX)]] = row
    return out


def collect_metrics(instance_dir: Path) -> dict[str, Any]:
    """One flat row of metrics for an instance: its own and its build's flows' (runs/*/).

    Names stay as recorded; when two flows record the same name, the later flow wins and
    the clash is logged.
    """
    row: dict[str, Any] = {}
    owner: dict[str, str] = {}
    dirs = [instance_dir]
    sub = instance_dir / FLOWS_SUBDIR
    steps = current_steps(instance_dir)
    if steps is not None:
        dirs += [sub / name for name in steps]
    elif sub.is_dir():
        dirs += sorted(p for p in sub.iterdir() if p.is_dir())
    for d in dirs:
        for flow, metrics in (read_metrics(d) if d.is_dir() else {}).items():
            for key, value in metrics.items():
                if key in owner and owner[key] != flow:
                    log.warning("metric %r recorded by both %s and %s in %s", key, owner[key], flow, instance_dir)
                row[key], owner[key] = value, flow
    return row
