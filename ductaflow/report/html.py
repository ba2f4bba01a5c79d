"""The report's repeated HTML (one scenario row, its matrix and results rows, the bar charts),
written in Python with every piece of user text through ``markupsafe.escape``.

10,000 rows through Jinja macros took seconds; these strings take milliseconds and are kept
on the row they belong to, so a row unchanged since the last report is not written again.
Colours, dots and glyphs come from CSS classes (``l-<light>`` on the row, inherited), so a
row carries its text, its links and little else.
"""

from __future__ import annotations

import json
from typing import Any

from markupsafe import escape

from ductaflow.report import svg
from ductaflow.report.lineage import tree_html
from ductaflow.report.numbers import number
from ductaflow.report.provenance import ENV_DIGITS

GLYPHS = {"green": "✓", "orange": "!", "red": "✕", "running": "▶", "pending": "○",
          "cancelled": "⊘", "skipped": "↷", "unknown": "?"}  # fmt: skip
_FLOWS_HEAD = (
    '<table class="flows"><thead><tr><th>Light</th><th>Flow</th><th class="num">Duration</th>'
    "<th>Warnings / error</th><th>Files</th></tr></thead><tbody>"
)
_WHY_EMPTY = {"pending": ": this scenario has not started", "cancelled": ": it was cancelled before it started"}
#: Cell texts longer than this also get a title (the cell may be cut off with an ellipsis).
_TITLE_OVER = 10


def _e(value: Any) -> str:
    return str(escape(value))


def _titled(cls: str, text: str, over: int = _TITLE_OVER) -> str:
    """``<span class="c ...">text</span>``, with the text as a title too when it may not fit."""
    t = _e(text)
    title = f' title="{t}"' if len(text) > over else ""
    return f'<span class="c {cls}"{title}>{t}</span>'


def record_row(rec: dict[str, Any]) -> str:
    """One build or flow record in a scenario's flow table."""
    if rec["role"] == "build":
        name = f'<span class="fname">{_e(rec["flow"])}</span><span class="tag">build</span>'
    else:
        name = f'<span class="fname">{_e(rec["instance"])}</span>'
        if rec["flow"] != rec["instance"]:
            name += f'<span class="muted small">{_e(rec["flow"])}</span>'
    if rec["started"]:
        name += f'<div class="st">started {_e(rec["started"])}</div>'
    if rec.get("trace_id"):
        trace = f'trace <span class="mono">{_e(rec["trace_id"])}</span>'
        name += f'<div class="st" title="OpenTelemetry trace id">{trace}</div>'
    detail = [f'<div class="tries">{_e(rec["attempts_note"])}</div>'] if rec.get("attempts_note") else []
    if rec["error_type"] or rec["error_message"]:
        msg = f": {_e(rec['error_message'])}" if rec["error_message"] else ""
        detail.append(f'<div class="emsg"><span class="etype">{_e(rec["error_type"])}</span>{msg}</div>')
    elif rec["reason"] and rec["light"] == "red":
        detail.append(f'<div class="emsg">{_e(rec["reason"])}</div>')
    if rec["warnings"]:
        lines = "".join(f"<li>{_e(w)}</li>" for w in rec["warnings"])
        if rec["more_warnings"]:
            lines += f'<li class="muted">… {rec["more_warnings"]} more in the log</li>'
        detail.append(f'<ul class="warns">{lines}</ul>')
    detail.extend(f'<div class="muted small">{_e(n)}</div>' for n in rec["notes"])
    if rec["traceback"]:
        detail.append(f'<details class="tb"><summary>traceback</summary><pre>{_e(rec["traceback"])}</pre></details>')
    links = "".join(f'<a href="{_e(ln["href"])}">{_e(ln["label"])}</a>' for ln in rec["links"])
    links += "".join(
        f'<a href="{_e(t["url"])}" title="{_e(t["backend"])} run {_e(t["run_id"])}">{_e(t["backend"])}</a>'
        if t.get("url") else f'<span class="muted" title="run {_e(t["run_id"])}">{_e(t["backend"])}</span>'
        for t in rec.get("trackers") or ()
    )
    if rec.get("folder"):
        links += f'<a href="{_e(rec["folder"])}" title="the instance folder">folder</a>'
    links += _outputs(rec)
    return (
        f'<tr class="l-{rec["light"]}" data-record="{_e(rec["instance"])}">'
        f'<td><span class="lamp">{_e(rec["label"])}</span></td><td>{name}</td>'
        f'<td>{_e(rec["duration_text"])}</td><td>{"".join(detail)}</td><td>{links}</td></tr>'
    )


def _outputs(rec: dict[str, Any]) -> str:
    """The run's output files with their sizes, collapsed (``rows.MAX_OUTPUTS`` at most)."""
    files = rec.get("outputs") or []
    if not files:
        return ""
    items = []
    for f in files:
        name = f'<a href="{_e(f["href"])}">{_e(f["name"])}</a>' if f["href"] else _e(f["name"])
        size = f' <span class="muted">{_e(f["size"])}</span>' if f["size"] else ""
        items.append(f"<li>{name}{size}</li>")
    if rec.get("more_outputs"):
        items.append(f'<li class="muted">… and {_e(rec["more_outputs"])} more</li>')
    count = len(files) + (rec.get("more_outputs") or 0)
    return (
        f'<details class="outs"><summary>{count} output file{"s" if count != 1 else ""}</summary>'
        f'<ul>{"".join(items)}</ul></details>'
    )


def scenario_item(
    row: dict[str, Any], sid: str, columns: list[str], sweep_col: bool = False, code_col: bool = False
) -> str:
    """One scenario of the list: a ``<details>`` whose summary is the grid row (with its sweep
    when ``sweep_col``, its commit when ``code_col``; ``data-sweep`` always, for the sweep filter)."""
    key = ("item", sid, tuple(columns), sweep_col, code_col)
    frags = row.setdefault("_html", {})
    if key in frags:
        return frags[key]
    inst = _e(row["instance"])
    dur = row["duration"]
    attrs = "".join(f' data-v{i}="{_e(v)}"' for i, v in enumerate(row["cells"]))
    cells = "".join(_titled("val", v) for v in row["cells"])
    swp = _e(row.get("sweep", ""))
    if code_col:
        cells = _code_cell(row) + cells
    if sweep_col:
        cells = _titled("sweep mono", row.get("sweep", "")) + cells
    note = _e(row["note"])
    note_title = f' title="{note}"' if note else ""
    html = (
        f'<details class="scn l-{row["light"]}" id="{sid}-r{row["index"]}" data-idx="{row["index"]}" '
        f'data-rank="{row["rank"]}" data-dur="{"" if dur is None else _e(dur)}" data-instance="{inst}" '
        f'data-sweep="{swp}"{attrs}>'
        f'<summary class="row"><span class="c">{_pill(row)}</span>'
        f'{_titled("inst", row["instance"], 24)}<span class="c dur">{_e(row["duration_text"])}</span>{cells}'
        f'<span class="c note"{note_title}>{note}</span></summary>'
        f'<div class="body">{scenario_body(row, columns)}</div></details>'
    )
    frags[key] = html
    return html


def scenario_body(row: dict[str, Any], columns: list[str]) -> str:
    """What an open scenario shows: where it ran, its error, its build and flow records."""
    key = ("body", tuple(columns))
    frags = row.setdefault("_html", {})
    if key in frags:
        return frags[key]
    where = f'<span class="mono">{_e(row["dir"])}/</span>' if row["dir"] else "no instance directory"
    if row["worst_flow"]:
        where += f" · worst flow <strong>{_e(row['worst_flow'])}</strong>"
    if row.get("commit"):
        where += (f' · code <span class="mono" title="{_e(row["commit_title"])}">{_e(row["commit"])}</span>'
                  f' · env <span class="mono" title="{_e(row["env"])}">{_e(row["env"][:ENV_DIGITS])}</span>')
    if row["cells"]:
        pairs = zip(columns, row["cells"], strict=False)
        where += " · " + ", ".join(f'{_e(c)}=<span class="mono">{_e(v)}</span>' for c, v in pairs)
    body = [f'<div class="where">{where}</div>']
    if row["error"]:
        body.append(f'<div class="errbox">{_e(row["error"])}</div>')
    if row.get("hooks"):
        body.append(_hook_failures(row["hooks"]))
    if row["records"]:
        body.append(_FLOWS_HEAD)
        body.extend(record_row(r) for r in row["records"])
        body.append("</tbody></table>")
    else:
        body.append(f'<p class="muted">No records on disk yet{_WHY_EMPTY.get(row["state"], "")}.</p>')
    frags[key] = "".join(body)
    return frags[key]


def _hook_failures(failures: list[dict[str, Any]]) -> str:
    """The hooks and trackers that raised on this scenario or its flows, each with its traceback."""
    items = []
    for f in failures:
        where = f' on <span class="mono">{_e(f["flow"])}</span>' if f.get("flow") else ""
        tb = f'<details class="tb"><summary>traceback</summary><pre>{_e(f["traceback"])}</pre></details>' \
            if f.get("traceback") else ""
        items.append(f'<li><span class="mono">{_e(f["hook"])}.{_e(f["method"])}</span>{where}: '
                     f'{_e(f["error"])}{tb}</li>')
    return f'<div class="hooks"><strong>hooks that raised</strong><ul>{"".join(items)}</ul></div>'


def _pill(row: dict[str, Any]) -> str:
    """A row's light; an up-to-date row (not re-run in its latest sweep) gets a mark beside it,
    so the pill keeps its width (``green · up to date`` did not fit the column)."""
    pill = f'<span class="lamp">{_e(row["label"])}</span>'
    if row.get("up_to_date"):
        pill += '<span class="utd" title="up to date: not re-run" aria-label="up to date: not re-run">↷</span>'
    return pill


def _code_cell(row: dict[str, Any]) -> str:
    """The grid cell of a row's commit (``*`` marks uncommitted changes), its full state as the title."""
    text = row.get("commit", "")
    return f'<span class="c mono code" title="{_e(row.get("commit_title", ""))}">{_e(text)}</span>'


def matrix_row(row: dict[str, Any], sid: str, flow_columns: list[str]) -> str:
    """One scenario's row of the scenario x flow matrix: a lit cell per flow, linked to its notebook."""
    key = ("matrix", sid, tuple(flow_columns))
    frags = row.setdefault("_html", {})
    if key in frags:
        return frags[key]
    cells = []
    for fc in flow_columns:
        f = row["flows"].get(fc)
        if f is None:
            cells.append(f'<td><span class="cell none" title="{_e(fc)}: not run"></span></td>')
            continue
        tip = _e(f"{fc}: {f['label']}" + (f" — {f['reason']}" if f["reason"] else ""))
        if f["links"]:
            url = _e(f["links"][0]["href"])
            cells.append(f'<td><a class="cell l-{f["light"]}" href="{url}" title="{tip}"></a></td>')
        else:
            cells.append(f'<td><span class="cell l-{f["light"]}" title="{tip}"></span></td>')
    html = (
        f'<tr class="mrow l-{row["light"]}"><th scope="row"><a href="#{sid}-r{row["index"]}" '
        f'title="{_e(row["instance"])}: {_e(row["label"])}{" · up to date" if row.get("up_to_date") else ""}">'
        f'{_e(row["instance"])}</a></th>{"".join(cells)}</tr>'
    )
    frags[key] = html
    return html


def results_rows(view: dict[str, Any], sid: str) -> str:
    """The rows of the results-by-scenario table, with their deltas to the baseline (kept on the
    view, which is kept while rows are)."""
    key = ("_html", sid)
    if view.get("_key") == key:
        return view["_rows_html"]
    out = []
    at = {c: i for i, c in enumerate(view.get("deltas", ()))}  # a metric's delta sits right after it
    for r in view["rows"]:
        cells = "".join(
            f"<td>{_e(v)}</td>" + (_delta_cell(r["deltas"][at[c]]) if c in at else "")
            for c, v in zip(view["columns"], r["cells"], strict=True)
        )
        out.append(
            f'<tr class="mrow l-{r["light"]}"><th scope="row"><a href="#{sid}-r{r["index"]}">{_e(r["instance"])}</a>'
            f"</th>{cells}</tr>"
        )
    view["_key"], view["_rows_html"] = key, "".join(out)
    return view["_rows_html"]


_STATS_HEAD = (
    '<table class="flows stats"><thead><tr><th>Metric</th><th class="num">n</th><th class="num">mean</th>'
    '<th class="num">std</th><th class="num">cv</th><th class="num">min</th><th class="num">max</th></tr></thead>'
    "<tbody>"
)


def group_item(
    group: dict[str, Any], rows: list[dict[str, Any]], sid: str, columns: list[str], sweep_col: bool, code_col: bool
) -> str:
    """A scenario's replicates: one summary row (its worst light, the statistics of each recorded
    metric) that opens onto the replicate rows."""
    first = rows[0]
    cells = [v if all(r["cells"][i] == v for r in rows) else "…" for i, v in enumerate(first["cells"])]
    sweeps = sorted({r.get("sweep", "") for r in rows})
    sweep = sweeps[0] if len(sweeps) == 1 else "…"
    head = "".join(_titled("val", v) for v in cells)
    if code_col:
        commits = {r.get("commit", "") for r in rows}
        head = (_code_cell(rows[0]) if len(commits) == 1 else '<span class="c mono code">…</span>') + head
    if sweep_col:
        head = _titled("sweep mono", sweep) + head
    stats = group["stats"]
    note = ", ".join(f'{st["metric"]} {st["text"]["mean"]} ± {st["text"]["std"] or "–"}' for st in stats[:2])
    note = f"{len(rows)} replicates" + (f" · {note}" if note else "")
    table = ""
    if stats:
        body = "".join(
            f'<tr><td class="mono">{_e(st["metric"])}</td><td class="num">{st["n"]}</td>'
            + "".join(f'<td class="num">{_e(st["text"][k])}</td>' for k in ("mean", "std", "cv", "min", "max"))
            + "</tr>"
            for st in stats
        )
        table = f"{_STATS_HEAD}{body}</tbody></table>"
    items = "".join(scenario_item(r, sid, columns, sweep_col, code_col) for r in rows)
    name = _e(group["scenario"])
    return (
        f'<details class="scn grp l-{group["light"]}" id="{sid}-g{first["index"]}" data-idx="{first["index"]}" '
        f'data-rank="{group["rank"]}" data-dur="" data-instance="{name}" data-sweep="{_e(sweep)}" '
        f'data-replicates="{len(rows)}"><summary class="row"><span class="c"><span class="lamp">'
        f'{_e(group["label"])}</span></span>{_titled("inst", group["scenario"] + f" ×{len(rows)}", 24)}'
        f'<span class="c dur"></span>{head}<span class="c note" title="{_e(note)}">{_e(note)}</span></summary>'
        f'<div class="body">{table}<div class="reps">{items}</div></div></details>'
    )


def _list(section: dict[str, Any], sweep_col: bool, code_col: bool) -> list[str]:
    """The scenario list: one item per row, a replicate group's rows under one group item."""
    sid, columns, rows = section["id"], section["columns"], section["rows"]
    groups = section.get("groups") or {}
    member = {id(r): name for name, g in groups.items() for r in g["rows"]}
    shown = {id(r) for r in rows}
    out, done = [], set()
    for row in rows:
        name = member.get(id(row))
        if name is None:
            out.append(scenario_item(row, sid, columns, sweep_col, code_col))
        elif name not in done:
            done.add(name)
            present = [r for r in groups[name]["rows"] if id(r) in shown]
            out.append(group_item(groups[name], present, sid, columns, sweep_col, code_col))
    return out


def section_parts(section: dict[str, Any]) -> dict[str, list[str]]:
    """The repeated parts of one build section as pieces of HTML, in page order."""
    sid = section["id"]
    rows = section["rows"]
    sweep_col = bool(section.get("sweeps"))
    parts = {"list": _list(section, sweep_col, bool(section.get("mixed_code")))}
    if section.get("tree"):
        parts["tree"] = [tree_html(section["tree"], sid)]
    if section["flow_columns"]:
        parts["matrix"] = [matrix_row(r, sid, section["flow_columns"]) for r in rows]
    if section["results"]:
        parts["results"] = [results_rows(section["results"], sid)]
        parts["charts"] = chart_parts(section["results"])
        parts["data"] = [compare_data(section)]
    return parts


def _compare_row(res: dict[str, Any], row: dict[str, Any] | None, metrics: list[str]) -> list[Any]:
    """[instance, light, parameter texts, metric texts, metric numbers (null when not a number)]."""
    values = row["metrics"] if row is not None else {}
    return [res["instance"], res["light"], row["cells"] if row is not None else [], res["cells"],
            [number(values.get(m)) for m in metrics]]  # fmt: skip


def _delta_cell(d: dict[str, str]) -> str:
    return f'<td class="delta {d["cls"]}">{_e(d["text"])}</td>'


def compare_data(section: dict[str, Any]) -> str:
    """The section's scenarios as JSON for the two-scenario comparison (a data block, never run):
    parameters and recorded metrics per scenario, text escaped so it cannot end the block."""
    view = section["results"]
    if "_data" in view:
        return view["_data"]
    rows = {r["index"]: r for r in section["rows"]}
    doc = {
        "params": section["columns"],
        "metrics": view["columns"],
        "baseline": view.get("baseline"),
        "rows": [_compare_row(r, rows.get(r["index"]), view["columns"]) for r in view["rows"]],
    }  # fmt: skip
    view["_data"] = json_block(f'{section["id"]}-data', doc)
    return view["_data"]


def json_block(element_id: str, doc: Any) -> str:
    """``doc`` in a data block (never run); ``<`` escaped so that no text can end the block."""
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def chart_parts(results: dict[str, Any]) -> list[str]:
    """A section's charts: the Pareto chart (when there is one), then one per metric."""
    return [svg.pareto(results.get("pareto"))] + [svg.chart(ch) for ch in results["charts"]]


def fill(frame: str, marker: str, parts: dict[str, list[str]]) -> str:
    """``frame`` with each ``<!--marker:key-->`` replaced by the pieces of ``parts[key]``: one
    join of the whole page (a 40 MB page through Markup and Jinja was copied three times)."""
    chunks = frame.split(f"<!--{marker}:")
    out = [chunks[0]]
    for chunk in chunks[1:]:
        key, rest = chunk.split("-->", 1)
        out.extend(parts[key])
        out.append(rest)
    return "".join(out)
