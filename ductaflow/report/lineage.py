"""An adaptive sweep's search in the report: each row's lineage, attempts and failure kind, and
the tree of scenarios their results proposed (parent -> children).

Pure: state-file entries, build records and report rows in, plain data and escaped HTML out.
A section none of whose rows has a parent gets no tree and costs one pass over its rows.
"""

from __future__ import annotations

from typing import Any

from markupsafe import escape

from ductaflow.report.numbers import fmt_metric, number
from ductaflow.report.spec import ReportSpec

#: Nodes drawn in a section's tree; the rest are counted (``ductaflow summary`` lists them all).
MAX_TREE_NODES = 500
_DONE = ("green", "orange", "red")


def retries_text(light: str, attempts: int) -> str:
    """``green after 2 retries`` for a done row that took more than one attempt, else ``""``."""
    retries = attempts - 1
    if retries < 1 or light not in _DONE:
        return ""
    return f"{light} after {retries} retr{'y' if retries == 1 else 'ies'}"


def attempt_fields(entry: dict[str, Any], light: str, build_rec: Any) -> dict[str, Any]:
    """A row's lineage and attempts: its ``parent``, ``attempts`` (starts, retries included), a red
    row's failure ``kind`` and ``phase``, and the ``attempt_note`` its note starts with.

    The conductor's entry comes first (``parent``, ``attempts``, ``kind``: absent in older state
    files); the build record's ``kind``, ``phase`` and ``attempt`` (status schema 8) fill in."""
    parent = entry.get("parent")
    attempts = entry.get("attempts")
    rec_attempt = getattr(build_rec, "attempt", None)
    if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1:
        attempts = rec_attempt if isinstance(rec_attempt, int) and rec_attempt >= 1 else 0
    kind = phase = ""
    if light == "red":
        rec_kind = getattr(build_rec, "kind", None)
        kind = str(entry.get("kind") or rec_kind or "")
        rec_phase = getattr(build_rec, "phase", None)
        phase = str(rec_phase) if rec_phase and kind and str(rec_kind or "") == kind else ""
    failure = f"{kind} in {phase}" if phase else kind
    parts = [retries_text(light, attempts), failure]
    if light == "running" and attempts > 1:
        parts.append(f"attempt {attempts}")
    return {
        "parent": str(parent) if isinstance(parent, str) and parent else None,
        "attempts": attempts,
        "kind": kind,
        "phase": phase,
        "attempt_note": " · ".join(p for p in parts if p),
    }


def _walk(rows: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """Every row with its depth, parents before their children, children in row order; a row whose
    parent is not among ``rows`` is a root (as is one caught in a cycle of parents)."""
    by_name: dict[str, dict[str, Any]] = {}
    for r in rows:
        by_name.setdefault(r["instance"], r)
    kids: dict[str, list[dict[str, Any]]] = {}
    roots = []
    for r in rows:
        if by_name[r["instance"]] is not r:
            continue  # the same instance twice: shown once
        parent = r.get("parent")
        if parent and parent != r["instance"] and parent in by_name:
            kids.setdefault(parent, []).append(r)
        else:
            roots.append(r)
    out: list[tuple[int, dict[str, Any]]] = []
    seen: set[str] = set()
    for start in [*roots, *(r for r in by_name.values())]:
        stack = [(0, start)]
        while stack:
            depth, row = stack.pop()
            if row["instance"] in seen:
                continue
            seen.add(row["instance"])
            out.append((depth, row))
            stack.extend((depth + 1, c) for c in reversed(kids.get(row["instance"], ())))
    return out


def search_tree(rows: list[dict[str, Any]], spec: ReportSpec | None = None) -> dict[str, Any] | None:
    """The section's search as a tree (None when no row has a parent): its nodes parents-first with
    their depth, the key metric (the report settings' first) and which way is better, and the best
    finished node by it."""
    if not any(r.get("parent") for r in rows):
        return None
    spec = spec or ReportSpec()
    metric = spec.charted[0] if spec.charted else None
    sense = spec.direction(metric) if metric else 0
    nodes = _walk(rows)
    best = None
    if metric and sense:
        scored = [(v, r["index"]) for _, r in nodes
                  if r["light"] in ("green", "orange") and (v := number(r["metrics"].get(metric))) is not None]
        if scored:
            best = (min(scored) if sense < 0 else max(scored, key=lambda s: (s[0], -s[1])))[1]
    return {
        "nodes": nodes,
        "metric": metric,
        "sense": sense,
        "best": best,
        "follow_ups": sum(1 for r in rows if r.get("parent")),
    }


def _e(value: Any) -> str:
    return str(escape(value))


def tree_node(row: dict[str, Any], sid: str, metric: str | None, paged: bool) -> str:
    """One node of the tree: light, name (linked to its row, or to its folder in a paged section),
    key metric and attempt note; kept on the row like its other fragments."""
    key = ("tnode", sid, metric, paged)
    frags = row.setdefault("_html", {})
    if key in frags:
        return frags[key]
    inst = _e(row["instance"])
    target = _folder(row) if paged else f"#{sid}-r{row['index']}"
    name = f'<a class="tname" href="{_e(target)}">{inst}</a>' if target else f'<span class="tname">{inst}</span>'
    html = f'<span class="lamp">{_e(row["label"])}</span>{name}'
    value = row["metrics"].get(metric) if metric else None
    if metric and (value is not None or row["light"] in _DONE):  # a scenario yet to run has none to show
        text = fmt_metric(value) if value is not None else "–"
        html += f'<span class="tmetric"><span class="muted">{_e(metric)}</span> {_e(text)}</span>'
    note = row.get("attempt_note") or ""
    if note:
        html += f'<span class="tnote">{_e(note)}</span>'
    frags[key] = html
    return html


def _folder(row: dict[str, Any]) -> str:
    """The URL of the row's instance folder (its build record's), or ``""``."""
    return next((str(r.get("folder") or "") for r in row.get("records") or () if r.get("role") == "build"), "")


def tree_html(tree: dict[str, Any], sid: str, paged: bool = False) -> str:
    """The tree as nested lists, at most :data:`MAX_TREE_NODES` nodes (the rest counted)."""
    nodes = tree["nodes"]
    shown = nodes[:MAX_TREE_NODES]
    out = ['<ul class="tree" role="tree">']
    depth = 0
    for i, (d, row) in enumerate(shown):
        if i:
            if d > depth:
                out.append('<ul role="group">' * (d - depth))
            else:
                out.append("</li>" + "</ul></li>" * (depth - d))
        depth = d
        best = ' data-best="1"' if row["index"] == tree["best"] else ""
        mark = '<span class="tbest" title="the best finished scenario by the key metric">best</span>' if best else ""
        out.append(f'<li class="tn l-{row["light"]}" role="treeitem" data-instance="{_e(row["instance"])}" '
                   f'data-depth="{d}"{best}>{tree_node(row, sid, tree["metric"], paged)}{mark}')
    if shown:
        out.append("</li>" + "</ul></li>" * depth)
    out.append("</ul>")
    if len(nodes) > len(shown):
        out.append(f'<p class="smeta">… and {len(nodes) - len(shown)} more scenarios: '
                   '<span class="mono">ductaflow summary</span> lists the whole search.</p>')
    return "".join(out)
