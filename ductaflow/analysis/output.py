"""An analysis table as text: Markdown for a terminal or a notebook, CSV, JSON, or a small HTML page."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

FORMATS = ("markdown", "csv", "json", "html")


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1e5 else f"{value:.6g}"
    return str(value)


def markdown(frame: pd.DataFrame) -> str:
    """A GitHub-style Markdown table (``|`` in a value is escaped)."""
    head = [str(c) for c in frame.columns]
    body = [[_cell(v).replace("|", "\\|") for v in row] for row in frame.itertuples(index=False)]
    widths = [max([len(h), *(len(r[i]) for r in body)]) for i, h in enumerate(head)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]  # fmt: skip
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in body]
    return "\n".join(lines) + "\n"


def render(frame: pd.DataFrame, fmt: str, title: str) -> str:
    """``frame`` in format ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "markdown":
        return markdown(frame)
    if fmt == "csv":
        return frame.to_csv(index=False)
    if fmt == "json":
        rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
        return json.dumps(rows, ensure_ascii=False, indent=2, default=str) + "\n"
    if fmt == "html":
        return _html(frame, title)
    raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")


def _html(frame: pd.DataFrame, title: str) -> str:
    """A self-contained page: no script, no network, every value escaped (Jinja2 autoescape)."""
    # heavy: Jinja2, deferred until a page is asked for
    from jinja2 import Environment, select_autoescape

    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    page = env.from_string(_PAGE)
    rows = [[_cell(v) for v in row] for row in frame.itertuples(index=False)]
    return page.render(title=title, columns=[str(c) for c in frame.columns], rows=rows)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>{{ title }}</title>
<style>body{font:14px system-ui,sans-serif;margin:24px}table{border-collapse:collapse}
th,td{padding:3px 10px;border-bottom:1px solid #d0d7de;text-align:right}
th:first-child,td:first-child{text-align:left}
th{color:#57606a;font-weight:600}</style></head>
<body><h1>{{ title }}</h1>
<table>
<thead><tr>{% for c in columns %}<th>{{ c }}</th>{% endfor %}</tr></thead>
<tbody>{% for r in rows %}<tr>{% for v in r %}<td>{{ v }}</td>{% endfor %}</tr>{% endfor %}</tbody>
</table></body></html>
"""
