"""What the report shows, read from the runs root: conductor state files and status records.

Pure reading. The conductor rewrites the report while it runs, so what one report read and
built is kept for the next (one runs root at a time): instances whose files have not
changed are not read again (:mod:`ductaflow.report.instances`), and their rows are reused.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from ductaflow.core.config import find_project_root
from ductaflow.core.liveness import gone
from ductaflow.core.names import check_component
from ductaflow.errors import ConfigError, InvalidName
from ductaflow.report.charts import results_view
from ductaflow.report.lineage import search_tree
from ductaflow.report.links import FILE, LINK, forget_folders
from ductaflow.report.memory import REPORT_LOCK, Memory, memory_of
from ductaflow.report.provenance import section_fields
from ductaflow.report.provenance import warnings as provenance_warnings
from ductaflow.report.replicates import replicate_groups
from ductaflow.report.rows import LIGHTS, elapsed, fmt_time
from ductaflow.report.rows import fmt_duration as _fmt_duration
from ductaflow.report.spec import ReportSpec, project_spec
from ductaflow.store.layout import STATE_DIR, STATUS_SUFFIX
from ductaflow.store.records import subdirs

log = logging.getLogger(__name__)

REFRESH_SECONDS = 5
def light_totals(rows: Iterable[dict[str, Any]]) -> dict[str, int]:
    counts = dict.fromkeys(LIGHTS, 0)
    total = 0
    for row in rows:
        counts[row["light"]] += 1
        total += 1
    counts["total"] = total
    counts["done"] = counts["green"] + counts["orange"] + counts["red"]
    return counts


def _section(
    mem: Memory, skey: str, build: str, rows: list[dict[str, Any]], replicates: list[Any] | None = None,
    spec: ReportSpec | None = None, **meta: Any,
) -> dict[str, Any]:
    spec = spec or ReportSpec()
    flow_columns: list[str] = []
    seen: set[str] = set()
    for row in rows:
        for k in row["flows"]:
            if k not in seen:
                seen.add(k)
                flow_columns.append(k)
    return {
        "build": build,
        "rows": rows,
        "totals": light_totals(rows),
        "flow_columns": flow_columns,
        "sweeps": sorted({r["sweep"] for r in rows if r.get("sweep")}),
        "replicate_of": {r["index"]: k for r, k in zip(rows, replicates or [], strict=False) if k is not None},
        "groups": replicate_groups(rows, replicates or [None] * len(rows)),
        "results": mem.section_results(skey, rows, spec),
        "tree": mem.section_tree(skey, rows, spec),  # None without lineage (a grid, not a search)
        "spec": spec,
        "skey": skey,
        **section_fields(rows),
        **meta,
    }


def _names_instances(column: str, entries: list[dict[str, Any]]) -> bool:
    """True for the column the instance names came from (shown once, as the scenario)."""
    values: list[dict[str, Any]] = [v if isinstance(v := e.get("values"), dict) else {} for e in entries]
    return bool(entries) and all(v.get(column) == e.get("instance") for v, e in zip(values, entries, strict=True))


def _rows(
    mem: Memory, skey: str, build: str, columns: list[str], entries: list[dict[str, Any]], notices: list[str],
    discovered: bool = False,
) -> list[dict[str, Any]]:
    """The rows of one section; what their records' reading warned about goes to ``notices``."""
    rows = []
    prefix = mem.root + os.sep
    for i, entry in enumerate(entries):
        row, snap = mem.row(skey, columns, entry, i, build, discovered)
        rows.append(row)
        if snap is not None and snap.warnings:
            notices.extend(w.replace(prefix, "") for w in snap.warnings)
    return rows


def _conductor_section(mem: Memory, path: Path, doc: Any, index: int, notices: list[str]) -> dict[str, Any]:
    """A section from one conductor state file (raises ValueError when it is not one)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("scenarios"), list):
        raise ValueError("not a conductor state document (no 'scenarios' list)")
    try:
        build = check_component(doc.get("build") or path.stem, "build name")
    except InvalidName as exc:
        raise ValueError(str(exc)) from exc
    entries = [e for e in doc["scenarios"] if isinstance(e, dict)]
    entries += _unlisted(mem, build, entries)
    columns = [str(c) for c in doc.get("columns") or [] if isinstance(c, (str, int, float))]
    columns = [c for c in columns if not _names_instances(c, entries)]
    state = str(doc.get("state") or "unknown")
    if state == "running" and gone(doc.get("conductor")):
        state = "abandoned"  # killed without a word: not live, no refreshing page
        entries = [_abandoned(e) for e in entries]
    skey = f"state:{path.name}:b{index}"
    rows = _rows(mem, skey, build, columns, entries, notices)
    spec = ReportSpec.from_record(doc.get("report")) or _project_spec(doc.get("build_path"), notices)
    return _section(
        mem,
        skey,
        build,
        rows,
        [e.get("replicate") for e in entries],
        spec,
        id=f"b{index}",
        source="conductor",
        state=state,
        live=state == "running",
        columns=columns,
        build_path=str(doc.get("build_path") or ""),
        started=fmt_time(doc.get("started")),
        updated=fmt_time(doc.get("updated")),
        finished=fmt_time(doc.get("finished")),
        elapsed=_fmt_duration(elapsed(doc.get("started"), doc.get("finished") if state != "running" else None)),
    )


def _project_spec(where: Any, notices: list[str]) -> ReportSpec:
    """``[tool.ductaflow.report]`` of the project holding ``where`` (a build file or a folder);
    settings that cannot be read are a notice on the page, and the report goes on without them."""
    if not isinstance(where, (str, Path)) or not str(where):
        return ReportSpec()
    try:
        return project_spec(find_project_root(where))
    except (ConfigError, OSError) as exc:
        notices.append(f"report settings ignored: {exc}")
        return ReportSpec()


def _unlisted(mem: Memory, build: str, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Instances of ``build`` on disk with a build record that the state file does not name
    (conducted before sweeps were kept, or run by hand): every instance is shown."""
    listed = {e.get("dir") for e in entries}
    found = []
    for name in subdirs(Path(mem.root) / build):
        rel = f"{build}/{name}"
        if rel in listed or name.startswith("."):
            continue
        snap = mem.instance(rel, build, brief=True)
        if snap is not None and snap.has_build:
            found.append({"instance": name, "dir": rel, "state": "done"})
    return found


def _abandoned(entry: dict[str, Any]) -> dict[str, Any]:
    """A scenario of a killed conductor: running ones did not finish, pending ones never will."""
    if entry.get("state") == "running":
        return {**entry, "state": "done", "status": "red", "error": entry.get("error") or "its conductor was killed"}
    if entry.get("state") == "pending":
        return {**entry, "state": "cancelled"}
    return entry


def _discovered_sections(mem: Memory, runs_root: Path, notices: list[str]) -> list[dict[str, Any]]:
    """Without a conductor state file: every ``<name>/<instance>/<name>_status.json``."""
    sections: list[dict[str, Any]] = []
    for top in (n for n in subdirs(runs_root) if not n.startswith(".")):
        entries = []
        for name in subdirs(runs_root / top):
            rel = f"{top}/{name}"
            snap = mem.instance(rel, top, brief=True)  # the build record's kind is all it needs
            record = f"{top}{STATUS_SUFFIX}"
            if snap is None:
                continue
            kind = snap.files.get(snap.instance_dir, {}).get(record)
            if kind == FILE or (kind == LINK and os.path.isfile(os.path.join(snap.instance_dir, record))):
                entries.append({"instance": name, "dir": rel, "state": "done"})
        if not entries:
            continue
        index = len(sections)
        skey = f"found:{top}:b{index}"
        rows = _rows(mem, skey, top, [], entries, notices, discovered=True)
        sections.append(
            _section(
                mem,
                skey,
                top,
                rows,
                None,
                _project_spec(runs_root.parent, notices),
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


def _only_sweep(sections: list[dict[str, Any]], sweep: str) -> list[dict[str, Any]]:
    """The sections narrowed to the rows of one sweep (sections left empty go)."""
    out = []
    for section in sections:
        rows = [r for r in section["rows"] if r.get("sweep") == sweep]
        if rows:
            reps = [section["replicate_of"].get(r["index"]) for r in rows]
            out.append({**section, "rows": rows, "totals": light_totals(rows),
                        "results": results_view(rows, section["spec"]), "sweeps": [sweep],
                        "tree": search_tree(rows, section["spec"]),
                        "groups": replicate_groups(rows, reps), **section_fields(rows)})
    return out


def collect_report(runs_root: str | Path, sweep: str | None = None) -> dict[str, Any]:
    """The template context for ``runs_root``, built only from what is on disk (only the rows
    of sweep ``sweep`` when given).

    One section per conductor state file; with none readable, one per discovered build or
    flow directory. ``live`` is true while any conductor says it is running. Rows whose
    entry and files are unchanged are the same objects as in the last context: read-only.
    """
    root = Path(runs_root).absolute()
    notices: list[str] = []
    sections: list[dict[str, Any]] = []
    with REPORT_LOCK:
        forget_folders()  # symlinks may have changed since the last report
        mem = memory_of(root)
        state_dir = root / STATE_DIR
        for path in sorted(state_dir.glob("*.json")) if state_dir.is_dir() else []:
            try:
                doc = mem.state(path)
                sections.append(_conductor_section(mem, path, doc, len(sections), notices))
            except (OSError, ValueError) as exc:
                log.warning("skipping unreadable conductor state %s: %s", path, exc)
                notices.append(f"conductor state {path.relative_to(root).as_posix()} could not be read: {exc}")
        if not sections and root.is_dir():
            sections = _discovered_sections(mem, root, notices)
        mem.sweep()
    if sweep is not None:
        sections = _only_sweep(sections, sweep)
    sections.sort(key=lambda s: (not s["live"], s["build"]))
    all_rows = [row for s in sections for row in s["rows"]]
    totals = light_totals(all_rows)
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
        "notices": list(dict.fromkeys(notices)),
        "provenance_warnings": provenance_warnings(sections),
    }


