"""The report's charts as inline SVG: bars per scenario, a histogram for many, the Pareto scatter.

Geometry comes from :mod:`ductaflow.report.charts` and :mod:`ductaflow.report.pareto_chart`;
every text is escaped (metric and scenario names are user text) and nothing here is script.
"""

from __future__ import annotations

from typing import Any

from markupsafe import escape

from ductaflow.report.numbers import fmt_metric


def _e(value: Any) -> str:
    return str(escape(value))


def _short(name: str, length: int = 26) -> str:
    """Jinja's ``truncate(26, true, "…")`` (leeway 5): cut only names longer than 31."""
    return name if len(name) <= length + 5 else name[: length - 1] + "…"


def chart(ch: dict[str, Any]) -> str:
    """One metric's chart (kept on the chart dict, which lives as long as its rows do)."""
    if "_html" not in ch:
        ch["_html"] = _histogram(ch) if ch.get("kind") == "histogram" else _bars(ch)
    return ch["_html"]


def _figure(caption: str, label: str, width: float, height: float, body: str) -> str:
    return (
        f'<figure class="chart"><figcaption>{_e(caption)}</figcaption><svg role="img" aria-label="{_e(label)}" '
        f'viewBox="0 0 {width:g} {height:g}" width="{width:g}" height="{height:g}">{body}</svg></figure>'
    )


def _bars(ch: dict[str, Any]) -> str:
    """A bar per scenario; a bar's title only where its label was cut; the baseline marked."""
    out = []
    for b in ch["bars"]:
        name = b["instance"]
        short = _short(name)
        title = f"<title>{_e(name)}: {_e(b['value'])}</title>" if short != name else ""
        y = b["y"]
        base = " base" if b.get("base") else ""
        out.append(
            f'<text class="lb{base}" x="176" y="{y + 13}">{_e(short)}</text>'
            f'<rect class="bar l-{b["light"]}{base}" x="184" y="{y}" width="{b["width"]}" height="16">{title}</rect>'
            f'<text x="{190 + b["width"]}" y="{y + 13}">{_e(b["value"])}</text>'
        )
    if ch.get("mark") is not None:
        out.append(f'<line class="mark" x1="{ch["mark"]}" x2="{ch["mark"]}" y1="0" y2="{ch["height"]}">'
                   "<title>baseline</title></line>")  # fmt: skip
    return _figure(ch.get("caption", ch["metric"]), f"{ch['metric']} by scenario", 640, ch["height"], "".join(out))


def _histogram(ch: dict[str, Any]) -> str:
    """How many scenarios fall in each of equal bins of the metric."""
    out = []
    for b in ch["bins"]:
        y = 160 - b["h"]
        out.append(f'<rect class="hbin" x="{b["x"]}" y="{y}" width="26" height="{b["h"]}">'
                   f"<title>{_e(b['range'])}: {b['count']} scenario(s)</title></rect>")  # fmt: skip
    out.append('<line class="axis" x1="40" x2="600" y1="160" y2="160"></line>')
    out.append(f'<text x="40" y="178">{_e(ch["lo"])}</text><text class="end" x="600" y="178">{_e(ch["hi"])}</text>')
    if ch.get("mark") is not None:
        out.append(f'<line class="mark" x1="{ch["mark"]}" x2="{ch["mark"]}" y1="10" y2="160">'
                   "<title>baseline</title></line>")  # fmt: skip
    return _figure(ch["caption"], f"distribution of {ch['metric']}", 640, ch["height"], "".join(out))


_SENSE = {1: "higher is better", -1: "lower is better"}


def pareto(view: dict[str, Any] | None) -> str:
    """Every scenario as a point of two metrics; the non-dominated ones filled and joined."""
    if not view:
        return ""
    if "_html" in view:
        return view["_html"]
    w, h, pad = view["width"], view["height"], view["pad"]
    out = [f'<line class="axis" x1="{pad}" x2="{w - pad}" y1="{h - pad}" y2="{h - pad}"></line>',
           f'<line class="axis" x1="{pad}" x2="{pad}" y1="{pad}" y2="{h - pad}"></line>']  # fmt: skip
    if len(view["front"]) > 1:
        line = " ".join(f"{p['cx']},{p['cy']}" for p in view["front"])
        out.append(f'<polyline class="front" points="{line}"></polyline>')
    for p in view["points"]:
        cls = "pt on" if p["front"] else "pt"
        tip = f"{p['instance']}: {view['x']} {fmt_metric(p['x'])}, {view['y']} {fmt_metric(p['y'])}"
        out.append(f'<circle class="{cls}" cx="{p["cx"]}" cy="{p["cy"]}" r="4"><title>{_e(tip)}</title></circle>')
    (x0, x1), (y0, y1) = view["x_range"], view["y_range"]
    out.append(
        f'<text x="{pad}" y="{h - pad + 16}">{_e(fmt_metric(x0))}</text>'
        f'<text class="end" x="{w - pad}" y="{h - pad + 16}">{_e(fmt_metric(x1))}</text>'
        f'<text class="end" x="{pad - 4}" y="{h - pad}">{_e(fmt_metric(y0))}</text>'
        f'<text class="end" x="{pad - 4}" y="{pad + 4}">{_e(fmt_metric(y1))}</text>'
        f'<text class="mid" x="{w / 2}" y="{h - 8}">{_e(view["x"])} ({_SENSE[view["x_sense"]]})</text>'
        f'<text class="mid" transform="translate(12 {h / 2}) rotate(-90)">{_e(view["y"])} '
        f'({_SENSE[view["y_sense"]]})</text>'
    )
    hidden = f" ({view['hidden']} dominated scenarios not drawn)" if view["hidden"] else ""
    caption = f"Pareto front: {view['x']} vs {view['y']} · {len(view['front'])} not dominated{hidden}"
    view["_html"] = _figure(caption, caption, w, h, "".join(out)).replace('class="chart"', 'class="chart pareto"', 1)
    return view["_html"]
