"""The report's scenario comparison: recorded metrics as a table and bar-chart geometry.

Pure data in, plain dicts out; the template draws the bars as SVG rects (no script).
"""

from __future__ import annotations

from typing import Any


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return None
    return float(value)


def _fmt_metric(value: Any) -> str:
    num = _number(value)
    if num is None:
        return "" if value is None else str(value)
    return f"{num:,.0f}" if abs(num) >= 1000 else f"{num:.4g}"


def results_view(rows: list[dict[str, Any]], max_charts: int = 3) -> dict[str, Any] | None:
    """The scenario comparison: a table of recorded metrics and bar charts of the numeric ones."""
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row["metrics"] if k not in columns)
    if not columns:
        return None
    table = [
        {"instance": r["instance"], "light": r["light"], "index": r["index"],
         "cells": [_fmt_metric(r["metrics"].get(c)) for c in columns]}
        for r in rows
    ]
    charts: list[dict[str, Any]] = []
    for col in columns:
        nums = [(r, v) for r in rows if (v := _number(r["metrics"].get(col))) is not None]
        if not nums or len(charts) >= max_charts or (len(nums) > 1 and len({v for _, v in nums}) == 1):
            continue  # a metric equal in every scenario compares nothing
        top = max(abs(v) for _, v in nums) or 1.0
        bars = [
            {"instance": r["instance"], "light": r["light"], "y": 4 + 20 * i, "value": _fmt_metric(v),
             "width": round(360 * abs(v) / top, 1)}
            for i, (r, v) in enumerate(nums)
        ]
        charts.append({"metric": col, "bars": bars, "height": 8 + 20 * len(bars)})
    return {"columns": columns, "rows": table, "charts": charts}
