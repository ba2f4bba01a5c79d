"""Big sections of the report: rows as data drawn a page at a time, details loaded when a row opens.

Above :data:`PAGED_AT` scenarios a build section is not rendered row by row into the page
(10,000 scenarios made a 40 MB page a browser chokes on). The page carries every row's
summary as JSON (light, name, duration, values, note: what search, sort and the filters
need) and its script draws one page of rows. What an open row shows (where it ran, its
error, its flows with links) is written beside the report, :data:`CHUNK` rows per file,
as ``<runs>/.ductaflow/report/<report name>/<section>-<k>.js``, each a call of
``ductaflowDetails({...})`` that the page loads by a script element when a row of that chunk
opens (``fetch`` cannot read files from a ``file://`` page; the policy is ``'strict-dynamic'``).
The chunk files hold HTML rendered and escaped here, like the page.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ductaflow.report import svg
from ductaflow.report.charts import delta
from ductaflow.report.html import scenario_body
from ductaflow.report.numbers import fmt_metric, number
from ductaflow.store.layout import RUNS_MARKER

#: Sections with more scenarios than this are drawn from data, a page at a time.
PAGED_AT = 500
#: Rows of one details file.
CHUNK = 100
#: Rows drawn per page of a paged section.
PAGE = 100
DETAILS_DIR = Path(RUNS_MARKER) / "report"


def is_paged(section: dict[str, Any]) -> bool:
    return len(section["rows"]) > PAGED_AT


def details_dir(report_name: str) -> Path:
    """The folder (relative to the runs root) of one report's details files."""
    return DETAILS_DIR / report_name.rsplit(".", 1)[0]


def _json_block(element_id: str, doc: Any) -> str:
    """``doc`` in a data block (never run); ``<`` escaped so that no text can end the block."""
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def rows_block(section: dict[str, Any], href: str, sweep_col: bool, code_col: bool) -> str:
    """Every row's summary as data for the page's script, and where its details files are."""
    sid = section["id"]
    rows = [
        [r["index"], r["instance"], r["light"], r["label"], r["rank"], r["duration"], r["duration_text"],
         r["cells"], r.get("sweep", ""), r.get("commit", ""), r.get("commit_title", ""), r["note"],
         1 if r.get("up_to_date") else 0]
        for r in section["rows"]
    ]  # fmt: skip
    view = section["results"] or {}
    named, base = view.get("named", []), view.get("base_values", {})
    spec = section.get("spec")
    if named:  # the metrics the project named, and their deltas to the baseline: sortable columns
        for out, row in zip(rows, section["rows"], strict=True):
            out.append([_metric_cell(row["metrics"].get(m), base.get(m), spec.direction(m) if spec else 0)
                        for m in named])  # fmt: skip
    doc = {"sweep": sweep_col, "code": code_col, "chunk": CHUNK, "page": PAGE, "details": f"{href}/{sid}-",
           "metrics": named, "deltas": bool(base), "rows": rows}  # fmt: skip
    return _json_block(f"{sid}-rows", doc)


def _metric_cell(value: Any, base: float | None, sense: int) -> list[Any]:
    """[value text, delta text, better/worse, value, delta] of one named metric of one row."""
    num = number(value)
    diff = delta(value, base, sense)
    return [fmt_metric(value), diff["text"], diff["cls"], num, None if num is None or base is None else num - base]


def compare_block(section: dict[str, Any]) -> str:
    """The two-scenario comparison's data for a paged section: metric numbers by row index
    (parameters and texts come from the rows' data, numbers are formatted by the script)."""
    view = section["results"]
    by_index = {r["index"]: r for r in section["rows"]}
    rows = [[r["index"], [number(by_index[r["index"]]["metrics"].get(m)) for m in view["columns"]]]
            for r in view["rows"] if r["index"] in by_index]  # fmt: skip
    doc = {"params": section["columns"], "metrics": view["columns"], "baseline": view.get("baseline"),
           "paged": True, "rows": rows}  # fmt: skip
    return _json_block(f"{sid}-data", doc) if (sid := section["id"]) else ""


def detail_chunks(section: dict[str, Any]) -> dict[str, str]:
    """The details files of a paged section: file name -> content."""
    sid, columns = section["id"], section["columns"]
    chunks: dict[int, dict[str, str]] = {}
    for row in section["rows"]:
        chunks.setdefault(row["index"] // CHUNK, {})[str(row["index"])] = scenario_body(row, columns)
    out = {}
    for k, bodies in chunks.items():
        text = json.dumps({"sid": sid, "rows": bodies}, ensure_ascii=False, separators=(",", ":"))
        out[f"{sid}-{k}.js"] = f"window.ductaflowDetails && window.ductaflowDetails({text});\n"
    return out


def paged_parts(section: dict[str, Any], href: str) -> dict[str, list[str]]:
    """The pieces of a paged section (no row, matrix or results-table HTML: those are drawn from data)."""
    sweep_col, code_col = bool(section.get("sweeps")), bool(section.get("mixed_code"))
    parts: dict[str, list[str]] = {"list": [], "rows": [rows_block(section, href, sweep_col, code_col)]}
    if section["results"]:
        parts["results"] = []
        parts["charts"] = [svg.pareto(section["results"].get("pareto"))] + [
            svg.chart(ch) for ch in section["results"]["charts"]
        ]
        parts["data"] = [compare_block(section)]
    return parts
