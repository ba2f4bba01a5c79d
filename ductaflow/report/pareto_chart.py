"""The report's Pareto chart: two metrics with a direction each, every scenario a point, the front joined.

Pure geometry for an inline SVG (:mod:`ductaflow.report.html` draws it). Drawn when the
report settings give two or more metrics a direction (``minimize``/``maximize``); the first
two are the axes. Red scenarios are left out (their numbers are not results).
"""

from __future__ import annotations

from typing import Any

from ductaflow.core.pareto import fronts
from ductaflow.report.numbers import number as _number
from ductaflow.report.spec import ReportSpec

#: Beyond this many points only the front is drawn (the rest are counted).
MAX_POINTS = 2000
_W, _H, _PAD = 580.0, 300.0, 68.0


def pareto_view(rows: list[dict[str, Any]], spec: ReportSpec) -> dict[str, Any] | None:
    """The points (scaled into the plot), which are on the front, and the axes' labels."""
    directed = [m for m in spec.charted if spec.direction(m)]
    if len(directed) < 2:
        return None
    xm, ym = directed[:2]
    pts = [(r, x, y) for r in rows if r["light"] in ("green", "orange")
           and (x := _number(r["metrics"].get(xm))) is not None and (y := _number(r["metrics"].get(ym))) is not None]
    if len(pts) < 2:
        return None
    on = fronts([(x, y) for _, x, y in pts], [spec.direction(xm), spec.direction(ym)], limit=1)
    xs, ys = [x for _, x, _ in pts], [y for _, _, y in pts]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)

    def sx(v: float) -> float:
        return round(_PAD + (v - x0) / ((x1 - x0) or 1.0) * (_W - 2 * _PAD), 1)

    def sy(v: float) -> float:
        return round(_H - _PAD - (v - y0) / ((y1 - y0) or 1.0) * (_H - 2 * _PAD), 1)

    points = [{"instance": r["instance"], "cx": sx(x), "cy": sy(y), "front": f == 1, "x": x, "y": y}
              for (r, x, y), f in zip(pts, on, strict=True)]  # fmt: skip
    front = sorted((p for p in points if p["front"]), key=lambda p: (p["cx"], p["cy"]))
    drawn = points if len(points) <= MAX_POINTS else front
    return {
        "x": xm, "y": ym, "x_sense": spec.direction(xm), "y_sense": spec.direction(ym),
        "points": drawn, "front": front, "hidden": len(points) - len(drawn),
        "x_range": (x0, x1), "y_range": (y0, y1), "width": _W, "height": _H, "pad": _PAD,
    }  # fmt: skip
