"""What the runs of a build cost: duration and peak memory per flow and scenario, from the run ledger."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ductaflow.errors import AnalysisError
from ductaflow.store.ledger import read as read_ledger

if TYPE_CHECKING:
    import pandas as pd

SORTS = {"duration": "duration", "memory": "peak_rss_mb"}


def resources(runs_root: str | Path, build: str, sort: str = "duration", by: str | None = None) -> pd.DataFrame:
    """The latest run of every flow (and the build itself) in each instance of ``build``: its
    scenario, flow, light, duration and peak memory, the slowest (``sort="memory"``: the
    hungriest) first. ``by="flow"`` or ``"scenario"`` sums durations and takes the highest peak per group."""
    if sort not in SORTS:
        raise AnalysisError(f"sort must be one of {', '.join(SORTS)}, not {sort!r}")
    ledger = read_ledger(runs_root)
    rel = ledger["instance_dir"].astype(str)
    rows = ledger[(ledger["event"] == "run") & ((rel == build) | rel.str.startswith(f"{build}/"))]
    if rows.empty:
        raise AnalysisError(f"{runs_root}: the ledger holds no run of build {build!r}")
    rows = rows.drop_duplicates("instance_dir", keep="last")  # the ledger is oldest first
    out = rows.assign(scenario=rel[rows.index].str.split("/").str[1])
    out = out[["scenario", "flow", "kind", "status", "duration", "peak_rss_mb", "started", "instance_dir"]]
    if by is not None:
        if by not in ("flow", "scenario"):
            raise AnalysisError(f"resources can be grouped by flow or scenario, not {by!r}")
        grouped = out.groupby(by, sort=False)
        out = grouped.agg(runs=("duration", "size"), duration=("duration", "sum"), peak_rss_mb=("peak_rss_mb", "max"))
        out = out.reset_index()
    return out.sort_values(SORTS[sort], ascending=False, na_position="last", kind="stable").reset_index(drop=True)
