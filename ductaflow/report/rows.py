"""One scenario of the report as plain display data: its light, note and the records of its flows.

Pure: a state-file entry and an instance :class:`~ductaflow.report.instances.Snapshot` in, a dict out
(the template context the tests and the HTML read). Links come from the snapshot's folder
listings through :class:`~ductaflow.report.links.Folder`, so nothing here touches the disk but the
symlink checks of files that are symlinks and the sizes of the output files listed (at most
:data:`MAX_OUTPUTS` per record).
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from ductaflow.report.instances import Snapshot
from ductaflow.report.lineage import attempt_fields
from ductaflow.report.links import DIR, Folder, href
from ductaflow.report.provenance import row_fields
from ductaflow.store.layout import (
    ARTIFACT_SUFFIXES,
    DEBUG_CONFIG_SUFFIX,
    DEBUG_NOTEBOOK_SUFFIX,
    FLOWS_SUBDIR,
    METRICS_SUFFIX,
    TABLE_INFIX,
    artifact_name,
    flow_of_artifact,
)
from ductaflow.store.result import FlowResult, RunState, TrackerBinding

MAX_WARNINGS = 20
MAX_TRACEBACK_LINES = 60
#: The id of the failing cell in a notebook's page (``ductaflow.run.notebook_html``; papermill's
#: banner carried it in pages exported before).
ERROR_ANCHOR = "papermill-error-cell"
#: Output files listed per record; the rest are counted.
MAX_OUTPUTS = 50
_OWN_SUFFIXES = (*ARTIFACT_SUFFIXES, METRICS_SUFFIX, DEBUG_NOTEBOOK_SUFFIX, DEBUG_CONFIG_SUFFIX)

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
STATUSES = {"green", "orange", "red"}


class _Empty(list[Any]):
    """The empty list of every row that has no warnings, notes, outputs, links, cells or records.

    A report over 10,000 scenarios keeps their rows between writes, and most of their lists are
    empty: one shared list instead of a dozen per row is a dozen fewer objects per row for the
    garbage collector to walk. Rows are read-only (the next report hands out the same ones);
    this list refuses to change, so a caller that tried would not change every row at once.
    """

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("report rows are read-only")


for _name in ("append", "extend", "insert", "remove", "pop", "clear", "sort", "reverse", "__setitem__",
              "__delitem__", "__iadd__", "__imul__"):  # fmt: skip
    setattr(_Empty, _name, _Empty._refuse)

#: The one empty list of rows (see :class:`_Empty`).
EMPTY: list[Any] = _Empty()


def shared(items: list[Any]) -> list[Any]:
    """``items``, or :data:`EMPTY` when there are none."""
    return items if items else EMPTY


# ---------------------------------------------------------------- small formatting helpers
def fmt_duration(seconds: float | None) -> str:
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


def fmt_time(iso: Any) -> str:
    """An ISO timestamp cut to seconds for display (``2024-05-01 13:02:11``)."""
    return str(iso)[:19].replace("T", " ") if iso else ""


def _parse_time(iso: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(iso)) if iso else None
    except ValueError:
        return None


def elapsed(start: Any, end: Any = None) -> float | None:
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


def fmt_size(size: int | None) -> str:
    """``512 B``, ``1.5 kB``, ``12.0 MB``, ``2.3 GB`` (powers of 1000); empty when unknown."""
    if size is None:
        return ""
    amount, unit = float(size), "B"
    for bigger in ("kB", "MB", "GB", "TB"):
        if amount < 1000:
            break
        amount, unit = amount / 1000, bigger
    return f"{int(amount)} B" if unit == "B" else f"{amount:.1f} {unit}"


def _tail(text: str, lines: int = MAX_TRACEBACK_LINES) -> str:
    parts = (text or "").strip("\n").split("\n")  # not splitlines(): U+2028 in a message is text
    return "\n".join(parts[-lines:])


def _links(folder: Folder, name: str, red: bool) -> list[dict[str, str]]:
    """Notebook (its HTML page when there is one, at the failing cell when red; else the
    ``.ipynb``), log, config and HTML links."""
    files = {kind: artifact_name(name, kind) for kind in ("html", "notebook", "log", "config")}
    html = folder.href(files["html"])
    notebook = folder.href(files["html"], ERROR_ANCHOR if red else "") if html else None
    notebook = notebook or folder.href(files["notebook"])
    found = [
        ("notebook", notebook),
        ("log", folder.href(files["log"])),
        ("config", folder.href(files["config"])),
        ("html", html),
    ]
    return [{"label": label, "href": url} for label, url in found if url]


def _own(name: str, flows: set[str]) -> bool:
    """True for ductaflow's files (of any flow recorded in the folder) and hidden files."""
    if name.startswith(".") or name == FLOWS_SUBDIR:
        return True
    for flow in flows:
        if name.startswith(flow) and (
            name[len(flow):] in _OWN_SUFFIXES
            or (name.startswith(flow + TABLE_INFIX) and name.endswith(".parquet"))
        ):
            return True
    return False


def _outputs(folder: Folder, flow: str) -> tuple[list[dict[str, str]], int]:
    """The files (and folders) a run left beside ductaflow's own, linked with their sizes:
    at most :data:`MAX_OUTPUTS`, and how many more there are."""
    entries = folder.entries()
    flows = {flow} | {f for n in entries if (f := flow_of_artifact(n, "status"))}
    names = sorted(n for n in entries if not _own(n, flows))
    shown = []
    for n in names[:MAX_OUTPUTS]:
        if entries[n] == DIR:
            url = folder.child(n, {}).url()
            shown.append({"name": n + "/", "href": url or "", "size": ""})
        else:
            shown.append({"name": n, "href": folder.href(n) or "", "size": fmt_size(folder.size(n))})
    return shared(shown), max(0, len(names) - MAX_OUTPUTS)


# ---------------------------------------------------------------- records -> context
def _record_light(rec: FlowResult) -> str:
    if rec.state == RunState.RUNNING:
        return "running"
    if rec.state not in (RunState.FINISHED, RunState.GONE):
        return "pending"
    return rec.status.value


def record_context(rec: FlowResult, folder: Folder, role: str = "flow") -> dict[str, Any]:
    """One build or flow record as plain display data."""
    light = _record_light(rec)
    err = rec.error
    duration = rec.duration if light != "running" else elapsed(rec.started)
    outputs, more_outputs = _outputs(folder, rec.flow)
    return {
        "role": role,
        "flow": rec.flow,
        "instance": rec.execution_dir.name,
        "light": light,
        "label": LIGHT_LABELS[light],
        "reason": rec.reason if light in ("red", "orange") else "",
        "duration": duration,
        "duration_text": fmt_duration(duration),
        "started": fmt_time(rec.started),
        "warnings": shared(list(rec.warnings[:MAX_WARNINGS])),
        "more_warnings": max(0, len(rec.warnings) - MAX_WARNINGS),
        "error_type": err.type if err else "",
        "error_message": err.message if err else "",
        "traceback": _tail(err.traceback) if err else "",
        "notes": shared(list(rec.notes)),
        "links": shared(_links(folder, rec.flow, light == "red")),
        "folder": folder.url() or "",
        "outputs": outputs,
        "more_outputs": more_outputs,
        "trackers": shared([_tracker_link(t, folder) for t in rec.trackers]),
        "trace_id": rec.trace_id or "",
        # its failure and retries ("kernel_died in execute, after 2 retries"); status schema 8
        "attempts_note": str(getattr(rec, "attempts_note", "") or "") if light not in ("running", "pending") else "",
    }


def _tracker_link(binding: TrackerBinding, folder: Folder) -> dict[str, str]:
    """A flow's tracker run as a link: its web page, or a file of it under the runs root (relative,
    so the report stays portable); none when it is neither."""
    url = binding.url or ""
    if url.startswith("file://"):
        url = href(folder.root, Path(unquote(url[len("file://"):]))) or ""
    elif not url.startswith(("http://", "https://")):
        url = ""
    return {"backend": binding.backend, "run_id": binding.run_id, "url": url}


def _hook_failures(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """The hooks that raised on the scenario and its flows, as the conductor kept them in its row."""
    kept = entry.get("hook_failures")
    if not isinstance(kept, list):
        return EMPTY
    return shared([{"hook": str(f.get("hook", "")), "method": str(f.get("method", "")), "flow": f.get("flow"),
                    "error": str(f.get("error", "")), "traceback": _tail(str(f.get("traceback") or ""))}
                   for f in kept if isinstance(f, dict)])  # fmt: skip


def _row_light(entry_state: str, status: Any, snap: Snapshot | None) -> str:
    summary = snap.summary if snap is not None else None
    if entry_state in ("pending", "running", "cancelled"):
        return entry_state
    if status in STATUSES:
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
    return error if light == "cancelled" else ""  # a scenario given up says why (not_run: ...)


def _records(runs_root: Path, snap: Snapshot) -> list[dict[str, Any]]:
    """The build record first, then its flows, each with the links its folder allows."""
    summary = snap.summary
    if summary is None:
        return []
    inst = snap.instance_dir
    top = Folder(runs_root, inst, snap.files.get(inst, {}))
    folders: dict[str, Folder] = {inst: top}

    def folder(rec: FlowResult) -> Folder:
        path = str(rec.execution_dir)
        if path not in folders:  # runs/<flow instance>: from the instance dir down
            sub = top
            for name in path[len(inst) + 1 :].split(os.sep):
                sub = sub.child(name, snap.files.get(sub.path + os.sep + name, {}))
            folders[path] = sub
        return folders[path]

    records = [record_context(summary.build, folder(summary.build), "build")] if summary.build is not None else []
    records.extend(record_context(f, folder(f), "flow") for f in summary.flows)
    return records


def scenario_row(
    runs_root: Path,
    columns: list[str],
    entry: dict[str, Any],
    index: int,
    snap: Snapshot | None,
    discovered: bool = False,
) -> dict[str, Any]:
    """One scenario of a state file (or a discovered instance) as a report row."""
    instance = str(entry.get("instance") or f"#{index + 1}")
    summary = snap.summary if snap is not None else None
    state = str(entry.get("state")) if entry.get("state") in _ROW_STATES else "done"
    light = _row_light(state, entry.get("status"), snap)
    records = _records(runs_root, snap) if snap is not None else []
    build_rec = summary.build if summary else None
    duration = entry.get("duration") if isinstance(entry.get("duration"), (int, float)) else None
    if duration is None and build_rec is not None:
        duration = elapsed(build_rec.started) if build_rec.state == RunState.RUNNING else build_rec.duration
    error = str(entry.get("error") or (summary.error if summary else "") or "")
    worst = str(entry.get("worst_flow") or (summary.worst_flow if summary else "") or "")
    values: dict[str, Any] = v if isinstance(v := entry.get("values"), dict) else {}
    up_to_date = state == "skipped" and light in STATUSES
    rel = snap.instance_dir[len(str(runs_root)) + 1 :].replace("\\", "/") if snap is not None else ""
    note = _note(light, error, worst, records) or ("up to date: not re-run" if up_to_date else "")
    tried = attempt_fields(entry, light, build_rec)
    note = " · ".join(p for p in (tried["attempt_note"], note) if p)
    if discovered and light == "unknown" and any(r["light"] == "running" for r in records):
        light = "running"  # a build record still running is a running row, not "no record"
    return {
        "index": index,
        "instance": instance,
        "dir": rel,
        "state": state,
        "light": light,
        "label": LIGHT_LABELS[light],
        "up_to_date": up_to_date,  # skipped in its latest sweep: the pill gets a mark, not a longer label
        "rank": LIGHTS.index(light),
        "metrics": entry.get("metrics") if isinstance(entry.get("metrics"), dict) else {},
        "duration": duration,
        "duration_text": fmt_duration(duration),
        "cells": shared([_fmt_value(values.get(c)) for c in columns]),
        "error": error if light == "red" else "",
        "worst_flow": worst,
        # the conduct call that last ran it: the conductor's word, else its build record's
        "sweep": str(entry.get("sweep") or (build_rec.sweep if build_rec is not None else None) or ""),
        "note": note,
        "records": shared(records),
        "hooks": _hook_failures(entry),
        "flows": {r["instance"]: r for r in records if r["role"] == "flow"},
        **row_fields([build_rec, *(summary.flows if summary else ())]),
        **tried,  # parent, attempts, kind, phase, attempt_note (ductaflow.report.lineage)
    }


def live(row: dict[str, Any]) -> bool:
    """True when the row shows times that grow by themselves (a running build or flow)."""
    return row["light"] == "running" or any(r["light"] == "running" for r in row["records"])
