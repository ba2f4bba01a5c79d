"""Replicate groups of the report: the rows of one scenario's replicates and their statistics.

A row is a replicate when the conductor recorded ``replicate`` for it (the build's config
carried ``_replicate``); its scenario is the instance name without ``__r<digits>``. Per
recorded numeric metric a group shows n, mean, sample standard deviation, coefficient of
variation (std/mean, none when the mean is 0), min and max: the numbers of
``results_by_scenario.parquet`` (``ductaflow.store.results``), in plain Python so that the
report does not import pandas.
"""

from __future__ import annotations

import math
import re
import statistics
from typing import Any

from ductaflow.report.numbers import fmt_metric as _fmt_metric
from ductaflow.report.numbers import number as _number

_SUFFIX = re.compile(r"__r\d+$")
STATS = ("mean", "std", "cv", "min", "max")


def metric_stats(values: list[float]) -> dict[str, float | None]:
    """mean, std (ddof=1; none for one value), cv (none when the mean is 0), min and max."""
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else None
    cv = std / mean if std is not None and mean != 0 else None
    return {"mean": mean, "std": std, "cv": cv, "min": min(values), "max": max(values)}


def replicate_groups(rows: list[dict[str, Any]], replicates: list[Any]) -> dict[str, dict[str, Any]]:
    """The replicate groups of ``rows`` (``replicates[i]``: row i's replicate number or None),
    by scenario name, in the order their first row appears."""
    members: dict[str, list[dict[str, Any]]] = {}
    for row, rep in zip(rows, replicates, strict=True):
        if isinstance(rep, int) and not isinstance(rep, bool):
            members.setdefault(_SUFFIX.sub("", row["instance"]), []).append(row)
    return {name: _group(name, group) for name, group in members.items()}


def _group(name: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One group: its rows, its worst light, and per metric its statistics (as numbers and text)."""
    worst = min(rows, key=lambda r: r["rank"])
    metrics: list[str] = []
    for row in rows:
        metrics.extend(k for k in row["metrics"] if k not in metrics)
    stats = []
    for metric in metrics:
        nums = [v for r in rows if (v := _number(r["metrics"].get(metric))) is not None]
        if nums:
            values = metric_stats(nums)
            text = {k: "" if v is None or math.isnan(v) else _fmt_metric(v) for k, v in values.items()}
            stats.append({"metric": metric, "n": len(nums), "values": values, "text": text})
    return {"scenario": name, "rows": rows, "n": len(rows), "light": worst["light"], "label": worst["label"],
            "rank": worst["rank"], "stats": stats}
