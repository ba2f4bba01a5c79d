"""The report's scenario comparison: recorded metrics as a table, deltas to a baseline, and chart geometry.

Pure data in, plain dicts out; :mod:`ductaflow.report.html` draws them as SVG (no script).
Which metrics are charted, which way is better and the baseline come from a
:class:`~ductaflow.report.spec.ReportSpec`; without one, the first metrics that differ.
Up to :data:`AGGREGATE_AT` scenarios a metric is a bar per scenario; above, a histogram.
"""

from __future__ import annotations

import statistics
from typing import Any

from ductaflow.report.numbers import fmt_metric as _fmt_metric
from ductaflow.report.numbers import number as _number
from ductaflow.report.pareto_chart import pareto_view
from ductaflow.report.spec import ReportSpec
from ductaflow.store.results import scenario_of

#: Above this many scenarios with a value, a metric is drawn as a histogram, not one bar each.
AGGREGATE_AT = 40
#: Charts drawn when the project names no metrics (the first ones that differ).
DEFAULT_CHARTS = 3
#: At most this many named metrics are charted.
MAX_CHARTS = 8
_BINS = 20


def _columns(rows: list[dict[str, Any]], spec: ReportSpec) -> tuple[list[str], list[str]]:
    """The metric columns (the named ones first, in order) and the named ones no row recorded."""
    seen: list[str] = []
    for row in rows:
        seen.extend(k for k in row["metrics"] if k not in seen)
    named = [m for m in spec.charted if m in seen]
    return named + [c for c in seen if c not in named], [m for m in spec.charted if m not in seen]


def baseline_values(rows: list[dict[str, Any]], name: str) -> dict[str, float] | None:
    """The baseline scenario's metrics (the mean over its replicates), or None when no row is it."""
    hits = [r for r in rows if r["instance"] == name or scenario_of(r["instance"]) == name]
    if not hits:
        return None
    out: dict[str, float] = {}
    for key in {k for r in hits for k in r["metrics"]}:
        nums = [v for r in hits if (v := _number(r["metrics"].get(key))) is not None]
        if nums:
            out[key] = statistics.fmean(nums)
    return out


def delta(value: Any, base: float | None, sense: int) -> dict[str, str]:
    """``+1.2 (+3.4%)`` and whether that is better or worse (by the metric's direction)."""
    num = _number(value)
    if num is None or base is None:
        return {"text": "", "cls": ""}
    diff = num - base
    pct = f" ({diff / base * 100:+.1f}%)" if base != 0 else ""
    cls = "" if diff == 0 or sense == 0 else ("better" if diff * sense > 0 else "worse")
    return {"text": f"{'+' if diff > 0 else ''}{_fmt_metric(diff)}{pct}", "cls": cls}


def results_view(rows: list[dict[str, Any]], spec: ReportSpec | None = None) -> dict[str, Any] | None:
    """The scenario comparison: the metrics table (with deltas to the baseline), charts and notes."""
    spec = spec or ReportSpec()
    columns, missing = _columns(rows, spec)
    if not columns:
        return None
    notes = [f"metric {m!r} named in the report settings was not recorded by any scenario shown" for m in missing]
    base = baseline_values(rows, spec.baseline) if spec.baseline else None
    if spec.baseline and base is None:
        notes.append(f"baseline {spec.baseline!r} is not among the scenarios shown")
    compared = [c for c in (spec.charted or columns) if c in columns and base is not None and c in base]
    table = [
        {"instance": r["instance"], "light": r["light"], "index": r["index"],
         "cells": [_fmt_metric(r["metrics"].get(c)) for c in columns],
         "deltas": [delta(r["metrics"].get(c), base.get(c) if base else None, spec.direction(c)) for c in compared]}
        for r in rows
    ]  # fmt: skip
    charts = [_chart(rows, m, spec, base) for m in _charted(rows, columns, spec)]
    return {
        "columns": columns,
        "deltas": compared,
        "baseline": spec.baseline if base is not None else None,
        "base_values": base or {},
        "named": [m for m in spec.charted if m in columns],
        "rows": table,
        "charts": charts,
        "pareto": pareto_view(rows, spec),
        "notes": notes,
    }


def _charted(rows: list[dict[str, Any]], columns: list[str], spec: ReportSpec) -> list[str]:
    """The named metrics that have numbers; without names, the first that differ between scenarios."""
    out = []
    for col in spec.charted or columns:
        values = {v for r in rows if (v := _number(r["metrics"].get(col))) is not None}
        if not values or (not spec.charted and len(values) == 1 and len(rows) > 1):
            continue  # unnamed and equal in every scenario: compares nothing
        out.append(col)
        if len(out) >= (MAX_CHARTS if spec.charted else DEFAULT_CHARTS):
            break
    return out


def _caption(metric: str, sense: int) -> str:
    return metric + {1: " · higher is better", -1: " · lower is better"}.get(sense, "")


def _chart(rows: list[dict[str, Any]], metric: str, spec: ReportSpec, base: dict[str, float] | None) -> dict[str, Any]:
    nums = [(r, v) for r in rows if (v := _number(r["metrics"].get(metric))) is not None]
    mark = base.get(metric) if base else None
    if len(nums) > AGGREGATE_AT:
        return _histogram(metric, [v for _, v in nums], _caption(metric, spec.direction(metric)), mark)
    top = max(abs(v) for _, v in nums) or 1.0
    bars = [
        {"instance": r["instance"], "light": r["light"], "y": 4 + 20 * i, "value": _fmt_metric(v),
         "width": round(360 * abs(v) / top, 1),
         "base": spec.baseline is not None and spec.baseline in (r["instance"], scenario_of(r["instance"]))}
        for i, (r, v) in enumerate(nums)
    ]  # fmt: skip
    return {"kind": "bars", "metric": metric, "caption": _caption(metric, spec.direction(metric)), "bars": bars,
            "height": 8 + 20 * len(bars), "mark": None if mark is None else round(184 + 360 * abs(mark) / top, 1)}


def _histogram(metric: str, values: list[float], caption: str, mark: float | None) -> dict[str, Any]:
    """Counts of ``values`` in equal bins from min to max: the shape of many scenarios at once."""
    lo, hi = min(values), max(values)
    width = (hi - lo) / _BINS or 1.0
    counts = [0] * _BINS
    for v in values:
        counts[min(int((v - lo) / width), _BINS - 1)] += 1
    top = max(counts)
    bins = [
        {"x": 40 + 28 * i, "h": round(140 * c / top, 1), "count": c,
         "range": f"{_fmt_metric(lo + i * width)} – {_fmt_metric(lo + (i + 1) * width)}"}
        for i, c in enumerate(counts)
    ]  # fmt: skip
    at = None if mark is None or hi == lo else round(40 + 28 * _BINS * (mark - lo) / (hi - lo), 1)
    return {"kind": "histogram", "metric": metric, "caption": f"{caption} · {len(values)} scenarios", "bins": bins,
            "lo": _fmt_metric(lo), "hi": _fmt_metric(hi), "mark": at, "height": 190}
