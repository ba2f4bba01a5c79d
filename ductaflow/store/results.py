"""Owner of ``<build>/results.parquet`` and ``<build>/results_by_scenario.parquet``.

The results table accumulates across sweeps: each ``conduct`` replaces the rows of its own
instances and keeps every other instance recorded before, so a sweep of 3 new scenarios
leaves the other 50 in place. ``results_by_scenario`` holds replicate statistics (n, mean,
sample std, cv, min, max per numeric metric) per scenario. Both carry their schema version
in the Parquet metadata; this module is their only writer.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from ductaflow.store.atomic import atomic_target
from ductaflow.store.layout import RESULTS_NAME

log = logging.getLogger(__name__)

#: The schema of both tables, kept in the Parquet file's key/value metadata.
RESULTS_SCHEMA = 1
SCHEMA_KEY = b"ductaflow.results.schema"
#: The columns of ``results.parquet`` that flows recorded (JSON list): what replicate statistics cover.
METRICS_KEY = b"ductaflow.results.metrics"
BY_SCENARIO_NAME = "results_by_scenario.parquet"
#: Columns the conductor adds that are never statistics of a replicate group.
NOT_METRICS = frozenset({"instance", "status", "state", "duration", "instance_dir", "error", "worst_flow",
                         "sweep", "scenario", "replicate"})
_REPLICATE_SUFFIX = re.compile(r"__r\d+$")


def scenario_of(instance: str) -> str:
    """The scenario a replicate instance belongs to: its name without a trailing ``__r<digits>``."""
    return _REPLICATE_SUFFIX.sub("", instance)


def merge_results(previous: pd.DataFrame | None, current: pd.DataFrame) -> pd.DataFrame:
    """``previous`` with its rows of instances in ``current`` replaced by those, and the other
    rows of ``current`` after it; columns unioned (``current``'s first)."""
    if previous is None or previous.empty or "instance" not in previous.columns:
        return current.reset_index(drop=True)
    kept = previous[~previous["instance"].isin(set(current["instance"]))]
    if kept.empty:
        return current.reset_index(drop=True)
    kept = kept.dropna(axis=1, how="all")  # an all-missing column would only make concat warn
    merged = pd.concat([current, kept], ignore_index=True, sort=False)
    rank = {name: i for i, name in enumerate(dict.fromkeys([*previous["instance"], *current["instance"]]))}
    return merged.sort_values("instance", key=lambda col: col.map(rank), kind="stable", ignore_index=True)


def replicate_stats(table: pd.DataFrame, metrics: Iterable[str] | None = None) -> pd.DataFrame:
    """Per scenario of the replicate rows of ``table``: ``n`` and, per numeric metric ``m`` (of
    ``metrics``; default every numeric column), ``m_mean``, ``m_std`` (ddof=1), ``m_cv``
    (std/mean, NaN when the mean is 0), ``m_min``, ``m_max``."""
    if "replicate" not in table.columns or "scenario" not in table.columns:
        return pd.DataFrame({"scenario": pd.Series(dtype="object"), "n": pd.Series(dtype="int64")})
    reps = table[table["replicate"].notna()]
    names = list(reps.columns) if metrics is None else [m for m in metrics if m in reps.columns]
    metrics = [c for c in names if c not in NOT_METRICS and pd.api.types.is_numeric_dtype(reps[c])
               and not pd.api.types.is_bool_dtype(reps[c])]
    groups = reps.groupby("scenario", sort=True)
    out = pd.DataFrame({"n": groups.size()})
    for m in metrics:
        col = groups[m]
        mean, std = col.mean(), col.std(ddof=1)
        out[f"{m}_mean"] = mean
        out[f"{m}_std"] = std
        out[f"{m}_cv"] = (std / mean.where(mean != 0)).astype(float)
        out[f"{m}_min"] = col.min()
        out[f"{m}_max"] = col.max()
    return out.reset_index()


def with_groups(table: pd.DataFrame, replicates: Iterable[int | None]) -> pd.DataFrame:
    """``table`` with ``replicate`` (from each instance's config ``_replicate``, else missing) and
    ``scenario`` (the instance name, without ``__r<k>`` for a replicate) columns; unchanged, with a
    warning, when the scenario table has columns of those names (no replicate statistics then)."""
    clash = [c for c in ("replicate", "scenario") if c in table.columns]
    if clash:
        log.warning("scenario column(s) %s hide the replicate grouping of results.parquet; rename them", clash)
        return table
    out = table.copy()
    reps = pd.array(list(replicates), dtype="Int64")
    out["replicate"] = reps
    out["scenario"] = [scenario_of(str(i)) if pd.notna(r) else str(i)
                       for i, r in zip(out["instance"], reps, strict=True)]
    return out


def read_results(path: Path) -> tuple[pd.DataFrame | None, list[str]]:
    """A results table written here and its metric columns, or None when there is none; a
    corrupt one is moved aside (``<name>.corrupt-<time>``, logged): its rows are never overwritten."""
    # heavy: pyarrow, deferred until a table is read
    import pyarrow.parquet as pq

    if not path.exists():
        return None, []
    try:
        arrow = pq.read_table(path)
        metrics = json.loads((arrow.schema.metadata or {}).get(METRICS_KEY, b"[]"))
        return arrow.to_pandas(), [str(m) for m in metrics] if isinstance(metrics, list) else []
    except Exception as exc:  # noqa: BLE001 - any reader failure means the file cannot be merged
        aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{time.time_ns() % 10**6}")
        try:
            path.rename(aside)
            log.warning("could not read %s (%s); kept it as %s and started a new one", path, exc, aside.name)
        except OSError as move_exc:
            log.warning("could not read %s (%s) nor move it aside (%s)", path, exc, move_exc)
            raise
        return None, []


def _plain(table: pd.DataFrame) -> pd.DataFrame:
    """Object columns that Parquet cannot type (mixed or nested values) as text."""
    table = table.copy()
    for col in table.columns:
        if table[col].dtype == object:
            kinds = {type(v) for v in table[col] if v is not None and not (isinstance(v, float) and pd.isna(v))}
            if len(kinds) > 1 or not kinds <= {str, bool, int, float}:
                table[col] = table[col].map(lambda v: None if v is None else str(v))
    return table


def _write(table: pd.DataFrame, path: Path, metrics: list[str] | None = None) -> None:
    """One table, atomically, with the schema version (and its metric columns) in its metadata."""
    # heavy: pyarrow, deferred until a table is written
    import pyarrow as pa
    import pyarrow.parquet as pq  # deferred with the line above

    arrow = pa.Table.from_pandas(_plain(table), preserve_index=False)
    meta = {**(arrow.schema.metadata or {}), SCHEMA_KEY: str(RESULTS_SCHEMA).encode()}
    if metrics is not None:
        meta[METRICS_KEY] = json.dumps(metrics).encode()
    with atomic_target(path) as tmp:
        pq.write_table(arrow.replace_schema_metadata(meta), tmp)


def _unchanged(previous: pd.DataFrame | None, known: list[str], merged: pd.DataFrame, names: list[str]) -> bool:
    """Whether writing ``merged`` (metric columns ``names``) would store what the file read as
    ``previous`` holds already: the same columns in the same order, and equal values row by row."""
    if previous is None or known != names or len(previous) != len(merged):
        return False
    new = _plain(merged)
    if list(new.columns) != list(previous.columns):
        return False
    return all(_values(new[c]) == _values(previous[c]) for c in new.columns)


def _values(col: pd.Series) -> list[Any]:
    """A column's values as Python objects, every kind of missing value as None."""
    return col.astype(object).where(col.notna(), None).tolist()


def write_results(current: pd.DataFrame, build_dir: Path, metrics: Iterable[str] = ()) -> pd.DataFrame | None:
    """Merge ``current`` (whose recorded metrics are the columns ``metrics``) into
    ``<build_dir>/results.parquet`` and rewrite ``results_by_scenario``; returns the merged table
    (None when it could not be written: logged, never raised)."""
    path = build_dir / RESULTS_NAME
    try:
        previous, known = read_results(path)
        merged = merge_results(previous, current)
        names = [m for m in dict.fromkeys([*known, *metrics]) if m in merged.columns]
        by_scenario = build_dir / BY_SCENARIO_NAME
        if _unchanged(previous, known, merged, names) and by_scenario.exists():
            return merged  # a re-run with every scenario up to date: both files already say this
        _write(merged, path, names)
        _write(replicate_stats(merged, names), by_scenario)
    except Exception as exc:  # noqa: BLE001 - the table is also returned; a write failure is logged
        log.warning("could not write %s: %s", path, exc)
        return None
    return merged
