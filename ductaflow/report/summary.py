"""``ductaflow summary``'s markdown: one sweep's search read from its state file.

A pure function of a :class:`~ductaflow.store.sweeps.SweepState` (what ``read_sweep_state`` returns,
whole at any moment, so a summary is safe while the sweep runs): its settings and budget, how many
scenarios have each light or are still to run, the best scenarios by a metric, the search tree
(each scenario under the one whose result proposed it) and the failures grouped by kind.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ductaflow.errors import ConfigError
from ductaflow.report.numbers import fmt_metric, number
from ductaflow.report.spec import ReportSpec, project_spec
from ductaflow.store.sweep_state import read_state, state_path
from ductaflow.store.sweeps import BUDGET, SweepNode, SweepState

log = logging.getLogger(__name__)

#: How a node shows in the markdown: its light when done, else where it is.
MARKS = {"green": "🟢 green", "orange": "🟠 orange", "red": "🔴 red", "running": "🔵 running",
         "queued": "⚪ queued", "not_run": "⚫ not run", "skipped": "↷ skipped", "done": "✔ done"}  # fmt: skip
#: The order of the counts line.
_COUNTED = ("green", "orange", "red", "running", "queued", "not_run", "skipped", "done")
#: Instances listed per failure kind (the rest counted).
MAX_LISTED = 20


def md(text: Any) -> str:
    """``text`` safe in a markdown table cell or list item: one line, pipes and HTML escaped."""
    s = text if isinstance(text, str) else _plain(text)
    s = s.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
    return " ".join(s.split())


def code(text: str) -> str:
    """``text`` as an inline code span (a fence longer than any run of backticks in it)."""
    text = " ".join(str(text).split())
    longest = 0
    run = 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _plain(value: Any) -> str:
    """A scenario value as the report shows it: strings verbatim, the rest as compact JSON."""
    if value is None:
        return ""
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError):
        return str(value)


def light_of(node: SweepNode) -> str:
    """A node's light when it has one (done, or skipped as up to date), else its state."""
    return node.status if node.state in ("done", "skipped") and node.status else node.state


def mark(node: SweepNode) -> str:
    """A node's light as an emoji and a word, with why a node was not run."""
    light = light_of(node)
    text = MARKS.get(light, light)
    if node.state == "skipped" and node.status:
        text += " (up to date)"
    if node.state == "not_run" and node.note:
        text += f" ({node.note})"
    return text


def spec_of(runs_root: str | Path, state: SweepState) -> ReportSpec:
    """The report settings of a sweep's build: ``conduct(report=...)`` as its conductor state
    keeps it, else the project's ``[tool.ductaflow.report]``, else none."""
    try:
        doc = read_state(state_path(Path(runs_root), state.build))
        kept = ReportSpec.from_record(doc.get("report")) if isinstance(doc, dict) else None
    except (OSError, ValueError):
        kept = None
    if kept is not None:
        return kept
    try:
        return project_spec(state.project_root) if state.project_root else ReportSpec()
    except (ConfigError, OSError) as exc:
        log.warning("report settings ignored: %s", exc)
        return ReportSpec()


def tree(state: SweepState) -> list[tuple[int, SweepNode]]:
    """Every node with its depth, parents first, children in submission order; a node whose parent
    is not in the sweep (or that sits in a cycle of parents) is a root. Linear in the nodes."""
    known = {n.instance for n in state.nodes}
    kids: dict[str | None, list[SweepNode]] = {}
    for n in state.nodes:
        parent = n.parent if n.parent in known and n.parent != n.instance else None
        kids.setdefault(parent, []).append(n)
    out: list[tuple[int, SweepNode]] = []
    seen: set[str] = set()
    for start in [*kids.get(None, ()), *state.nodes]:
        stack = [(0, start)]
        while stack:
            depth, node = stack.pop()
            if node.instance in seen:
                continue
            seen.add(node.instance)
            out.append((depth, node))
            stack.extend((depth + 1, c) for c in reversed(kids.get(node.instance, ())))
    return out


def best(state: SweepState, metric: str, maximize: bool, top: int) -> list[SweepNode]:
    """The ``top`` finished scenarios (green or orange) with a numeric ``metric``, best first;
    ties in submission order."""
    scored = [(v, n.seq, n) for n in state.nodes
              if light_of(n) in ("green", "orange") and (v := number(n.metrics.get(metric))) is not None]  # fmt: skip
    scored.sort(key=lambda s: (-s[0] if maximize else s[0], s[1]))
    return [n for _, _, n in scored[: max(0, top)]]


def _header(state: SweepState) -> list[str]:
    budget = f"{state.runs} of at most {state.max_runs}" if state.max_runs is not None else f"{state.runs} (no budget)"
    lines = [f"# Sweep {code(state.sweep)}", "", f"- build: {code(state.build)}", f"- state: **{md(state.state)}**"]
    if state.started:
        lines.append(f"- started: {md(state.started)}" + (f" · updated: {md(state.updated)}" if state.updated else ""))
    lines.append(f"- runs started: {budget}")
    if state.follow_up:
        lines.append(f"- follow-up: {code(state.follow_up)}")
    if state.duplicates:
        lines.append(f"- duplicate follow-ups not run again: {state.duplicates}")
    return lines


def _counts(state: SweepState) -> list[str]:
    counts = state.counts()
    budget = sum(1 for n in state.nodes if n.state == "not_run" and n.note == BUDGET)
    order = [k for k in _COUNTED if k in counts] + sorted(k for k in counts if k not in _COUNTED)
    rows = [f"| {MARKS.get(k, md(k))} | {counts[k]} |" for k in order]
    lines = ["", "## Scenarios", "", "| light / state | count |", "|---|---:|", *rows,
             f"| total | {len(state.nodes)} |"]
    if budget:
        lines += ["", f"{budget} scenario{'s' if budget != 1 else ''} left unrun by the run budget (max_runs)."]
    return lines


def _best(state: SweepState, metric: str | None, maximize: bool, top: int, recorded: list[str]) -> list[str]:
    if not metric:
        known = ", ".join(code(m) for m in recorded[:12]) or "none yet"
        return ["", "## Best scenarios", "", f"No metric chosen: pass --metric NAME (recorded: {known})."]
    way = "highest" if maximize else "lowest"
    lines = ["", f"## Best {top} by {code(metric)} ({way} first)", ""]
    nodes = best(state, metric, maximize, top)
    if not nodes:
        return [*lines, f"No finished green or orange scenario recorded {code(metric)} as a number yet."]
    params = list(dict.fromkeys(k for n in nodes for k in n.values))
    lines.append("| # | scenario | light | " + " | ".join([md(metric), *(md(p) for p in params)]) + " |")
    lines.append("|---:|---|---|" + "---:|" * (1 + len(params)))
    for i, n in enumerate(nodes, 1):
        cells = [fmt_metric(n.metrics.get(metric)), *(n.values.get(p, "") for p in params)]
        lines.append(f"| {i} | {code(n.instance)} | {mark(n)} | " + " | ".join(md(c) for c in cells) + " |")
    return lines


def _tree(state: SweepState, metric: str | None) -> list[str]:
    lines = ["", "## Search tree", ""]
    walked = tree(state)
    if not walked:
        return [*lines, "No scenarios."]
    for depth, n in walked:
        parts = [f"{'  ' * depth}- {code(n.instance)} {mark(n)}"]
        value = n.metrics.get(metric) if metric else None
        if metric and (value is not None or light_of(n) in ("green", "orange", "red")):  # none before it ran
            parts.append(f"{md(metric)} {md(fmt_metric(value)) if value is not None else '–'}")
        if n.attempts > 1:
            parts.append(f"{n.attempts - 1} retr{'y' if n.attempts == 2 else 'ies'}")
        if light_of(n) == "red" and n.kind:
            parts.append(md(n.kind))
        lines.append(" · ".join(parts))
    return lines


def _failures(state: SweepState) -> list[str]:
    groups: dict[str, list[SweepNode]] = {}
    for n in state.nodes:
        if light_of(n) == "red":
            groups.setdefault(n.kind or "unknown", []).append(n)
    lines = ["", "## Failures by kind", ""]
    if not groups:
        return [*lines, "None."]
    lines += ["| kind | count | scenarios |", "|---|---:|---|"]
    for kind, nodes in sorted(groups.items(), key=lambda g: (-len(g[1]), g[0])):
        names = ", ".join(code(n.instance) for n in nodes[:MAX_LISTED])
        more = f", … {len(nodes) - MAX_LISTED} more" if len(nodes) > MAX_LISTED else ""
        lines.append(f"| {md(kind)} | {len(nodes)} | {names}{more} |")
    return lines


def _recorded(nodes: Iterable[SweepNode]) -> list[str]:
    """The numeric metrics the scenarios recorded, in the order first seen."""
    return list(dict.fromkeys(k for n in nodes for k, v in n.metrics.items() if number(v) is not None))


def summary_markdown(
    state: SweepState, metric: str | None = None, maximize: bool | None = None, top: int = 5,
    spec: ReportSpec | None = None,
) -> str:
    """The sweep's summary as markdown. ``metric`` defaults to the report settings' first (``spec``);
    ``maximize`` to what they say of it (else lower is better)."""
    spec = spec or ReportSpec()
    metric = metric or (spec.charted[0] if spec.charted else None)
    if maximize is None:
        maximize = bool(metric) and spec.direction(metric or "") > 0
    lines = [*_header(state), *_counts(state), *_best(state, metric, maximize, top, _recorded(state.nodes)),
             *_tree(state, metric), *_failures(state)]  # fmt: skip
    return "\n".join(lines) + "\n"
