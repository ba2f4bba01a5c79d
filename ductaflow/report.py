"""The live traffic-light report: records on disk -> template context -> self-contained HTML.

Pure reading and rendering; never imports execution. Everything shown comes from the
runs root: conductor state files (``.ductaflow/conductor/<build>.json``) and status records.
Links are relative to the report (which sits in the runs root) and never leave it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from ductaflow.charts import results_view
from ductaflow.errors import InvalidName
from ductaflow.links import forget_folders, href, inside
from ductaflow.liveness import gone
from ductaflow.models import FlowResult
from ductaflow.records import STATUS_SUFFIX, InstanceSummary, summarize_instance
from ductaflow.rundir import atomic_write_text, check_component

log = logging.getLogger(__name__)

REPORT_NAME = "conductor_status_report.html"
STATE_DIR = Path(".ductaflow") / "conductor"
REFRESH_SECONDS = 5
MAX_WARNINGS = 20
MAX_TRACEBACK_LINES = 60
ERROR_ANCHOR = "papermill-error-cell"

#: Every light a row or flow can show, worst first (the order of the default sort).
LIGHTS = ("red", "orange", "running", "unknown", "green", "pending", "cancelled", "skipped")
LIGHT_LABELS = {
    "red": "red",
    "orange": "orange",
    "green": "green",
    "running": "running",
    "pending": "pending",
    "cancelled": "cancelled",
    "skipped": "skipped",
    "unknown": "no record",
}
_ROW_STATES = {"pending", "running", "done", "cancelled", "skipped"}
_STATUSES = {"green", "orange", "red"}


# ---------------------------------------------------------------- small formatting helpers
def _fmt_duration(seconds: float | None) -> str:
    """``12.3 s``, ``4 m 05 s``, ``2 h 03 m``; empty when unknown."""
    if seconds is None or not isinstance(seconds, (int, float)) or seconds < 0:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} m {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} m"


def _fmt_time(iso: Any) -> str:
    """An ISO timestamp cut to seconds for display (``2024-05-01 13:02:11``)."""
    return str(iso)[:19].replace("T", " ") if iso else ""


def _parse_time(iso: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(iso)) if iso else None
    except ValueError:
        return None


def _elapsed(start: Any, end: Any = None) -> float | None:
    """Seconds from ``start`` to ``end`` (default: now), or None when unparseable."""
    t0 = _parse_time(start)
    if t0 is None:
        return None
    t1 = _parse_time(end) or datetime.now(t0.tzinfo)
    try:
        return max(0.0, (t1 - t0).total_seconds())
    except TypeError:  # naive vs aware
        return None


def _fmt_value(value: Any) -> str:
    """A scenario value as the user wrote it: strings verbatim, the rest as compact JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError):
        return str(value)


def _tail(text: str, lines: int = MAX_TRACEBACK_LINES) -> str:
    parts = (text or "").strip("\n").split("\n")  # not splitlines(): U+2028 in a message is text
    return "\n".join(parts[-lines:])


def _links(runs_root: Path, exec_dir: Path, name: str, red: bool) -> list[dict[str, str]]:
    """Notebook (HTML at the error cell when red and exported), log, config and HTML links."""
    html = href(runs_root, exec_dir / f"{name}.html")
    notebook = href(runs_root, exec_dir / f"{name}.html", ERROR_ANCHOR) if red and html else None
    notebook = notebook or href(runs_root, exec_dir / f"{name}.ipynb")
    found = [
        ("notebook", notebook),
        ("log", href(runs_root, exec_dir / f"{name}_execution_output.txt")),
        ("config", href(runs_root, exec_dir / f"{name}_config.json")),
        ("html", html),
    ]
    return [{"label": label, "href": url} for label, url in found if url]


# ---------------------------------------------------------------- records -> context
def _record_light(rec: FlowResult) -> str:
    if rec.state == "running":
        return "running"
    if rec.state != "finished":
        return "pending"
    return rec.status.value


def record_context(runs_root: Path, rec: FlowResult, role: str = "flow") -> dict[str, Any]:
    """One build or flow record as plain display data."""
    light = _record_light(rec)
    err = rec.error
    duration = rec.duration if light != "running" else _elapsed(rec.started)
    return {
        "role": role,
        "flow": rec.flow,
        "instance": rec.execution_dir.name,
        "light": light,
        "label": LIGHT_LABELS[light],
        "reason": rec.reason if light in ("red", "orange") else "",
        "duration": duration,
        "duration_text": _fmt_duration(duration),
        "started": _fmt_time(rec.started),
        "warnings": list(rec.warnings[:MAX_WARNINGS]),
        "more_warnings": max(0, len(rec.warnings) - MAX_WARNINGS),
        "error_type": err.type if err else "",
        "error_message": err.message if err else "",
        "traceback": _tail(err.traceback) if err else "",
        "notes": list(rec.notes),
        "links": _links(runs_root, rec.execution_dir, rec.flow, light == "red"),
    }


def _row_light(entry_state: str, status: Any, summary: InstanceSummary | None) -> str:
    if entry_state in ("pending", "running", "cancelled"):
        return entry_state
    if status in _STATUSES:
        return str(status)
    if summary is not None and summary.status is not None:
        return summary.status.value
    if summary is not None and summary.running:
        return "running"
    return "skipped" if entry_state == "skipped" else "unknown"


def _note(light: str, error: str, worst: str, flows: list[dict[str, Any]]) -> str:
    """The one-line summary shown in a collapsed row."""
    if light == "red":
        return error or (f"{worst}: failed" if worst else "failed")
    if light == "orange":
        hit = next((f for f in flows if f["light"] == "orange"), None)
        if hit is None:
            return f"{worst}: warnings" if worst else "warnings"
        first = hit["warnings"][0] if hit["warnings"] else ""
        return f"{hit['instance']}: {first}" if first else f"{hit['instance']}: warnings"
    if light == "running":
        busy = [f["instance"] for f in flows if f["light"] == "running" and f["role"] == "flow"]
        return f"running {', '.join(busy)}" if busy else ""
    return ""


def scenario_row(runs_root: Path, build: str, columns: list[str], entry: dict[str, Any], index: int) -> dict[str, Any]:
    """One scenario of a state file (or a discovered instance) as a report row."""
    instance = str(entry.get("instance") or f"#{index + 1}")
    instance_dir = inside(runs_root, entry.get("dir"))
    summary = summarize_instance(instance_dir, build) if instance_dir and instance_dir.is_dir() else None
    state = entry.get("state") if entry.get("state") in _ROW_STATES else "done"
    light = _row_light(state, entry.get("status"), summary)
    records: list[dict[str, Any]] = []
    if summary is not None:
        if summary.build is not None:
            records.append(record_context(runs_root, summary.build, "build"))
        records.extend(record_context(runs_root, f, "flow") for f in summary.flows)
    build_rec = summary.build if summary else None
    duration = entry.get("duration") if isinstance(entry.get("duration"), (int, float)) else None
    if duration is None and build_rec is not None:
        duration = build_rec.duration if build_rec.state == "finished" else _elapsed(build_rec.started)
    error = str(entry.get("error") or (summary.error if summary else "") or "")
    worst = str(entry.get("worst_flow") or (summary.worst_flow if summary else "") or "")
    values = entry.get("values") if isinstance(entry.get("values"), dict) else {}
    up_to_date = state == "skipped" and light in _STATUSES
    return {
        "index": index,
        "instance": instance,
        "dir": instance_dir.relative_to(runs_root).as_posix() if instance_dir else "",
        "state": state,
        "light": light,
        "label": f"{LIGHT_LABELS[light]} · up to date" if up_to_date else LIGHT_LABELS[light],
        "rank": LIGHTS.index(light),
        "metrics": entry.get("metrics") if isinstance(entry.get("metrics"), dict) else {},
        "duration": duration,
        "duration_text": _fmt_duration(duration),
        "cells": [_fmt_value(values.get(c)) for c in columns],
        "error": error if light == "red" else "",
        "worst_flow": worst,
        "note": _note(light, error, worst, records),
        "records": records,
        "flows": {r["instance"]: r for r in records if r["role"] == "flow"},
    }


def _totals(rows: Iterable[dict[str, Any]]) -> dict[str, int]:
    counts = dict.fromkeys(LIGHTS, 0)
    total = 0
    for row in rows:
        counts[row["light"]] += 1
        total += 1
    counts["total"] = total
    counts["done"] = counts["green"] + counts["orange"] + counts["red"]
    return counts


def _section(runs_root: Path, build: str, rows: list[dict[str, Any]], **meta: Any) -> dict[str, Any]:
    flow_columns: list[str] = []
    for row in rows:
        flow_columns.extend(k for k in row["flows"] if k not in flow_columns)
    return {
        "build": build,
        "rows": rows,
        "totals": _totals(rows),
        "flow_columns": flow_columns,
        "results": results_view(rows),
        **meta,
    }


def _names_instances(column: str, entries: list[dict[str, Any]]) -> bool:
    """True for the column the instance names came from (shown once, as the scenario)."""
    values = [e.get("values") if isinstance(e.get("values"), dict) else {} for e in entries]
    return bool(entries) and all(v.get(column) == e.get("instance") for v, e in zip(values, entries, strict=True))


def _conductor_section(runs_root: Path, path: Path, doc: Any, index: int) -> dict[str, Any]:
    """A section from one conductor state file (raises ValueError when it is not one)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("scenarios"), list):
        raise ValueError("not a conductor state document (no 'scenarios' list)")
    try:
        build = check_component(doc.get("build") or path.stem, "build name")
    except InvalidName as exc:
        raise ValueError(str(exc)) from exc
    entries = [e for e in doc["scenarios"] if isinstance(e, dict)]
    columns = [str(c) for c in doc.get("columns") or [] if isinstance(c, (str, int, float))]
    columns = [c for c in columns if not _names_instances(c, entries)]
    state = str(doc.get("state") or "unknown")
    if state == "running" and gone(doc.get("conductor")):
        state = "abandoned"  # killed without a word: not live, no refreshing page
        entries = [_abandoned(e) for e in entries]
    rows = [scenario_row(runs_root, build, columns, e, i) for i, e in enumerate(entries)]
    return _section(
        runs_root,
        build,
        rows,
        id=f"b{index}",
        source="conductor",
        state=state,
        live=state == "running",
        columns=columns,
        build_path=str(doc.get("build_path") or ""),
        started=_fmt_time(doc.get("started")),
        updated=_fmt_time(doc.get("updated")),
        finished=_fmt_time(doc.get("finished")),
        elapsed=_fmt_duration(_elapsed(doc.get("started"), doc.get("finished") if state != "running" else None)),
    )


def _abandoned(entry: dict[str, Any]) -> dict[str, Any]:
    """A scenario of a killed conductor: running ones did not finish, pending ones never will."""
    if entry.get("state") == "running":
        return {**entry, "state": "done", "status": "red", "error": entry.get("error") or "its conductor was killed"}
    if entry.get("state") == "pending":
        return {**entry, "state": "cancelled"}
    return entry


def _discovered_sections(runs_root: Path, first_index: int) -> list[dict[str, Any]]:
    """Without a conductor state file: every ``<name>/<instance>/<name>_status.json``."""
    sections = []
    for top in sorted(p for p in runs_root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        entries = [
            {"instance": inst.name, "dir": f"{top.name}/{inst.name}", "state": "done"}
            for inst in sorted(top.iterdir())
            if inst.is_dir() and (inst / f"{top.name}{STATUS_SUFFIX}").is_file()
        ]
        if not entries:
            continue
        rows = [scenario_row(runs_root, top.name, [], e, i) for i, e in enumerate(entries)]
        for row in rows:  # a build record still running is a running row, not "no record"
            if row["light"] == "unknown" and any(r["light"] == "running" for r in row["records"]):
                row.update(light="running", label=LIGHT_LABELS["running"], rank=LIGHTS.index("running"))
        index = first_index + len(sections)
        sections.append(
            _section(
                runs_root,
                top.name,
                rows,
                id=f"b{index}",
                source="discovered",
                state="discovered",
                live=False,
                columns=[],
                build_path="",
                started="",
                updated="",
                finished="",
                elapsed="",
            )
        )
    return sections


@contextlib.contextmanager
def _captured_warnings(into: list[str], runs_root: Path) -> Iterator[None]:
    """Collect this thread's record-reading warnings so the page can show them too."""
    me = threading.get_ident()

    class _Grab(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.thread == me and record.levelno >= logging.WARNING:
                into.append(record.getMessage().replace(str(runs_root) + os.sep, ""))

    handler = _Grab()
    target = logging.getLogger("ductaflow.records")
    target.addHandler(handler)
    try:
        yield
    finally:
        target.removeHandler(handler)


def collect_report(runs_root: str | Path) -> dict[str, Any]:
    """The template context for ``runs_root``, built only from what is on disk.

    One section per conductor state file; with none readable, one per discovered build or
    flow directory. ``live`` is true while any conductor says it is running.
    """
    root = Path(runs_root).absolute()
    forget_folders()  # symlinks may have changed since the last report
    notices: list[str] = []
    sections: list[dict[str, Any]] = []
    with _captured_warnings(notices, root):
        state_dir = root / STATE_DIR
        for path in sorted(state_dir.glob("*.json")) if state_dir.is_dir() else []:
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
                sections.append(_conductor_section(root, path, doc, len(sections)))
            except (OSError, ValueError) as exc:
                log.warning("skipping unreadable conductor state %s: %s", path, exc)
                notices.append(f"conductor state {path.relative_to(root).as_posix()} could not be read: {exc}")
        if not sections and root.is_dir():
            sections = _discovered_sections(root, 0)
    sections.sort(key=lambda s: (not s["live"], s["build"]))
    all_rows = [row for s in sections for row in s["rows"]]
    totals = _totals(all_rows)
    worst = next((light for light in ("red", "orange", "running", "green") if totals[light]), "pending")
    return {
        "title": ", ".join(s["build"] for s in sections) or "no runs",
        "runs_root": str(root),
        "generated": datetime.now().astimezone().isoformat(timespec="seconds"),
        "generated_epoch": int(time.time()),
        "live": any(s["live"] for s in sections),
        "refresh_seconds": REFRESH_SECONDS,
        "sections": sections,
        "totals": totals,
        "worst": worst,
        "notices": notices,
    }


# ---------------------------------------------------------------- rendering and writing
@lru_cache(maxsize=1)
def _environment() -> Any:
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    return Environment(
        loader=PackageLoader("ductaflow", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_report(context: dict[str, Any]) -> str:
    """Render the context to one self-contained HTML page (fresh CSP nonce per render)."""
    template = _environment().get_template("report.html.j2")
    return template.render(**context, nonce=secrets.token_urlsafe(18))


def write_report(runs_root: str | Path) -> Path:
    """Render the report for ``runs_root`` into ``<runs_root>/conductor_status_report.html`` atomically."""
    root = Path(runs_root)
    path = root / REPORT_NAME
    atomic_write_text(path, render_report(collect_report(root)))
    return path


def _instance_dirs(results: Any) -> list[Path] | None:
    """Instance dirs named by ``results`` (``instance_dir`` column/key, or plain paths)."""
    if results is None:
        return None
    if hasattr(results, "to_dict") and hasattr(results, "columns"):  # a pandas DataFrame
        if "instance_dir" not in results.columns:
            return None
        results = results.to_dict("records")
    dirs = []
    for item in results:
        if isinstance(item, (str, Path)):
            dirs.append(Path(item))
        elif isinstance(item, dict) and item.get("instance_dir"):
            dirs.append(Path(item["instance_dir"]))
    return dirs or None


def generate_status_report(results: Any, runs_root: str | Path) -> str:
    """The report HTML for ``runs_root`` (the earlier tool's call), built from disk.

    ``results`` may be None, the conductor's DataFrame, a list of dicts or of paths. When
    it names instance dirs (an ``instance_dir`` column/key, or the paths themselves,
    absolute or relative to the runs root) the rows are restricted to those dirs, in that
    order; otherwise it is ignored. The caller writes the returned HTML where it likes.
    """
    context = collect_report(runs_root)
    wanted = _instance_dirs(results)
    if wanted is not None:
        root = Path(runs_root).resolve()
        order: dict[str, int] = {}
        for i, d in enumerate(wanted):
            d = d if d.is_absolute() or d.exists() else Path(runs_root) / d
            with contextlib.suppress(ValueError, OSError):
                order.setdefault(d.resolve().relative_to(root).as_posix(), i)
        for section in context["sections"]:
            rows = sorted((r for r in section["rows"] if r["dir"] in order), key=lambda r: order[r["dir"]])
            section.update(rows=rows, totals=_totals(rows), results=results_view(rows))
        context["sections"] = [s for s in context["sections"] if s["rows"]]
        context["totals"] = _totals(r for s in context["sections"] for r in s["rows"])
    return render_report(context)
