"""What the runs of a build cost: duration and peak memory per flow and scenario, from the run ledger."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ductaflow.errors import AnalysisError
from ductaflow.store.ledger import read as read_ledger
from ductaflow.store.results import scenario_of

if TYPE_CHECKING:
    import pandas as pd

SORTS = {"duration": "duration", "memory": "peak_rss_mb"}
COLUMNS = ["scenario", "instance", "flow", "kind", "status", "duration", "peak_rss_mb", "started", "instance_dir"]


def resources(runs_root: str | Path, build: str, sort: str = "duration", by: str | None = None) -> pd.DataFrame:
    """The latest run of every flow (and the build itself) in each instance of ``build``: its
    scenario, flow, light, duration and peak memory, the slowest (``sort="memory"``: the
    hungriest) first. With ``by`` (``flow``, ``scenario``, ``instance`` or any scenario-table
    column), the runs, summed duration and highest peak per group."""
    if sort not in SORTS:
        raise AnalysisError(f"sort must be one of {', '.join(SORTS)}, not {sort!r}")
    ledger = read_ledger(runs_root)
    rel = ledger["instance_dir"].astype(str)
    rows = ledger[(ledger["event"] == "run") & ((rel == build) | rel.str.startswith(f"{build}/"))]
    if rows.empty:
        raise AnalysisError(f"{runs_root}: the ledger holds no run of build {build!r}")
    rows = rows.drop_duplicates("instance_dir", keep="last")  # the ledger is oldest first
    instance = rel[rows.index].str.split("/").str[1].fillna(build)
    values = [_params(text) for text in rows["scenario"]]  # the ledger's scenario: JSON of the row's values
    out = rows.assign(instance=instance, scenario=instance.map(scenario_of))
    out = _grouped(out, by, values) if by is not None else out[COLUMNS]
    return out.sort_values(SORTS[sort], ascending=False, na_position="last", kind="stable").reset_index(drop=True)


def _grouped(runs: pd.DataFrame, by: str, values: list[dict[str, Any]]) -> pd.DataFrame:
    """Runs, summed duration and highest peak per value of ``by`` (a ledger or scenario-table column)."""
    if by not in ("flow", "scenario", "instance", "kind", "status"):
        known = sorted({k for row in values for k in row})
        if by not in known:
            raise AnalysisError(f"resources cannot be grouped by {by!r}; known: flow, scenario, instance, "
                                f"{', '.join(known) or '(no scenario columns in the ledger)'}")  # fmt: skip
        runs = runs.assign(**{by: [row.get(by) for row in values]})
    grouped = runs.groupby(by, sort=False, dropna=False)
    out = grouped.agg(runs=("duration", "size"), duration=("duration", "sum"), peak_rss_mb=("peak_rss_mb", "max"))
    return out.reset_index()


def _params(text: Any) -> dict[str, Any]:
    """A ledger record's scenario values (JSON text of the scenario row), or none."""
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
