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

import hashlib
import json
from pathlib import Path
from typing import Any

from ductaflow.report.html import chart_parts, json_block, scenario_body
from ductaflow.report.lineage import tree_html
from ductaflow.report.numbers import number
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
    if named:  # the metrics the project named, and their deltas to the baseline: sortable columns
        cols = {m: i for i, m in enumerate(view["columns"])}
        deltas = {m: i for i, m in enumerate(view["deltas"])}
        shown = {r["index"]: r for r in view["rows"]}  # the results view already formatted them
        for out, row in zip(rows, section["rows"], strict=True):
            out.append([_metric_cell(row["metrics"].get(m), base.get(m), shown[row["index"]], cols[m], deltas.get(m))
                        for m in named])  # fmt: skip
    doc = {"sweep": sweep_col, "code": code_col, "chunk": CHUNK, "page": PAGE, "details": f"{href}/{sid}-",
           "metrics": named, "deltas": bool(base), "rows": rows}  # fmt: skip
    return json_block(f"{sid}-rows", doc)


def _metric_cell(value: Any, base: float | None, shown: dict[str, Any], col: int, at: int | None) -> list[Any]:
    """[value text, delta text, better/worse, value, delta] of one named metric of one row."""
    num = number(value)
    diff = shown["deltas"][at] if at is not None else {"text": "", "cls": ""}
    return [shown["cells"][col], diff["text"], diff["cls"], num, None if num is None or base is None else num - base]


def compare_block(section: dict[str, Any]) -> str:
    """The two-scenario comparison's data for a paged section: metric numbers by row index
    (parameters and texts come from the rows' data, numbers are formatted by the script)."""
    view = section["results"]
    by_index = {r["index"]: r for r in section["rows"]}
    rows = [[r["index"], [number(by_index[r["index"]]["metrics"].get(m)) for m in view["columns"]]]
            for r in view["rows"] if r["index"] in by_index]  # fmt: skip
    doc = {"params": section["columns"], "metrics": view["columns"], "baseline": view.get("baseline"),
           "paged": True, "rows": rows}  # fmt: skip
    return json_block(f"{section['id']}-data", doc)


def detail_chunks(section: dict[str, Any]) -> dict[str, tuple[str | None, list[dict[str, Any]]]]:
    """The details files of a paged section: file name -> (a key of what it is made from, its rows).
    The key is None when a row's source cannot vouch for itself (files too young, a running record):
    that file is always written again."""
    sid, columns = section["id"], section["columns"]
    groups: dict[int, list[dict[str, Any]]] = {}
    for row in section["rows"]:
        groups.setdefault(row["index"] // CHUNK, []).append(row)
    out = {}
    for k, rows in groups.items():
        keys = [(r["index"], r.get("_ckey")) for r in rows]
        key = None
        if all(c is not None for _, c in keys):
            key = hashlib.blake2b(json.dumps([sid, columns, keys]).encode(), digest_size=16).hexdigest()
        out[f"{sid}-{k}.js"] = (key, rows)
    return out


def chunk_text(section: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """The content of one details file: a call handing the page each row's rendered details."""
    bodies = {str(r["index"]): scenario_body(r, section["columns"]) for r in rows}
    text = json.dumps({"sid": section["id"], "rows": bodies}, ensure_ascii=False, separators=(",", ":"))
    return f"window.ductaflowDetails && window.ductaflowDetails({text});\n"


def paged_parts(section: dict[str, Any], href: str) -> dict[str, list[str]]:
    """The pieces of a paged section (no row, matrix or results-table HTML: those are drawn from data)."""
    sweep_col, code_col = bool(section.get("sweeps")), bool(section.get("mixed_code"))
    parts: dict[str, list[str]] = {"list": [], "rows": [rows_block(section, href, sweep_col, code_col)]}
    if section.get("tree"):
        parts["tree"] = [tree_html(section["tree"], section["id"], paged=True)]
    if section["results"]:
        parts["results"] = []
        parts["charts"] = chart_parts(section["results"])
        parts["data"] = [compare_block(section)]
    return parts
