"""The live traffic-light report: records on disk -> template context -> self-contained HTML.

Pure reading and rendering; never imports execution. Everything shown comes from the
runs root: conductor state files (``.ductaflow/conductor/<build>.json``) and status records.
Links are relative to the report (which sits in the runs root) and never leave it.

The conductor rewrites the report while it runs, so what one report read and built is kept
for the next (one runs root at a time): instances whose files have not changed are not read
again (:mod:`ductaflow.instances`), and their rows and HTML are reused as they are.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterable
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from markupsafe import Markup

from ductaflow.charts import results_view
from ductaflow.errors import InvalidName
from ductaflow.instances import RACY_NS, InstanceCache, Sig, Snapshot, signature
from ductaflow.links import FILE, LINK, forget_folders, href, inside
from ductaflow.liveness import gone
from ductaflow.records import STATUS_SUFFIX, subdirs
from ductaflow.report_html import fill, section_parts
from ductaflow.report_rows import LIGHTS, elapsed, fmt_time, live, scenario_row
from ductaflow.report_rows import fmt_duration as _fmt_duration
from ductaflow.rundir import atomic_write_text, check_component
from ductaflow.summaries import SummaryCache, summary_row

__all__ = ["REPORT_NAME", "STATE_DIR", "collect_report", "generate_status_report", "href", "render_report",
           "write_report"]  # fmt: skip

log = logging.getLogger(__name__)

REPORT_NAME = "conductor_status_report.html"
STATE_DIR = Path(".ductaflow") / "conductor"
REFRESH_SECONDS = 5
_row_tokens = itertools.count(1)


class _Memory:
    """What the last report of one runs root read and built, reused where nothing changed."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.instances = InstanceCache()
        self.states: dict[str, tuple[Sig, Any]] = {}  # state file -> (signature, parsed document)
        self.rows: dict[tuple[str, int], tuple[dict[str, Any], tuple[str, ...], int | None, dict[str, Any]]] = {}
        self.results: dict[str, tuple[tuple[int, ...], Any]] = {}  # section -> (its rows' tokens, view)
        self.dirs: dict[str, str | None] = {}  # a state file's relative dir -> instance dir or None
        self.used: set[Any] = set()
        self.shared = -1  # instances.reads when the status cache was last written

    def state(self, path: Path) -> Any:
        """A state file's document, parsed again only when its signature changed."""
        key = str(path)
        self.used.add(key)
        sig = signature(key)
        hit = self.states.get(key)
        if hit is not None and sig is not None and hit[0] == sig:
            return hit[1]
        doc = json.loads(path.read_text(encoding="utf-8"))
        if sig is not None and max(sig[2], sig[3]) < time.time_ns() - RACY_NS:
            self.states[key] = (sig, doc)
        return doc

    def instance(self, rel: Any, build: str) -> Snapshot | None:
        """The snapshot of the instance a state file names (None when the name would escape)."""
        if not isinstance(rel, str):
            return None
        if rel not in self.dirs:
            path = inside(Path(self.root), rel)
            self.dirs[rel] = str(path) if path is not None else None
        folder = self.dirs[rel]
        return self.instances.read(folder, build) if folder is not None else None

    def row(
        self, skey: str, columns: list[str], entry: dict[str, Any], index: int, build: str, discovered: bool = False
    ) -> tuple[dict[str, Any], Snapshot | None]:
        """The row of one entry: the last report's when the entry and its instance are unchanged."""
        snap = self.instance(entry.get("dir"), build)
        token = snap.token if snap is not None else None
        key = (skey, index)
        self.used.add(key)
        cols = tuple(columns)
        hit = self.rows.get(key)
        if hit is not None and hit[2] == token and hit[1] == cols and (hit[0] is entry or hit[0] == entry):
            return hit[3], snap
        row = scenario_row(Path(self.root), columns, entry, index, snap, discovered)
        row["_token"] = next(_row_tokens)
        if live(row):  # its running times grow by themselves: built anew each time
            self.rows.pop(key, None)
        else:
            self.rows[key] = (entry, cols, token, row)
        return row, snap

    def section_results(self, skey: str, rows: list[dict[str, Any]]) -> Any:
        """The results table and charts of a section, built again only when one of its rows changed."""
        tokens = tuple(r["_token"] for r in rows)
        self.used.add(skey)
        hit = self.results.get(skey)
        if hit is not None and hit[0] == tokens:
            return hit[1]
        view = results_view(rows)
        self.results[skey] = (tokens, view)
        return view

    def sweep(self) -> None:
        """Forget what this report did not use (deleted instances, rows, state files)."""
        self.instances.sweep()
        for store in (self.rows, self.results, self.states):
            for key in [k for k in store if k not in self.used]:
                del store[key]
        if len(self.dirs) > 4 * max(len(self.rows), 1024):
            self.dirs.clear()
        self.used = set()


_LOCK = threading.Lock()
_MEMORY: list[_Memory] = []


def _memory(root: Path) -> _Memory:
    """The memory of ``root``'s reports (only the last runs root reported on is remembered)."""
    if not _MEMORY or _MEMORY[0].root != str(root):
        _MEMORY[:] = [_Memory(str(root))]
    return _MEMORY[0]


# ---------------------------------------------------------------- sections
def _totals(rows: Iterable[dict[str, Any]]) -> dict[str, int]:
    counts = dict.fromkeys(LIGHTS, 0)
    total = 0
    for row in rows:
        counts[row["light"]] += 1
        total += 1
    counts["total"] = total
    counts["done"] = counts["green"] + counts["orange"] + counts["red"]
    return counts


def _section(mem: _Memory, skey: str, build: str, rows: list[dict[str, Any]], **meta: Any) -> dict[str, Any]:
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
        "totals": _totals(rows),
        "flow_columns": flow_columns,
        "results": mem.section_results(skey, rows),
        **meta,
    }


def _names_instances(column: str, entries: list[dict[str, Any]]) -> bool:
    """True for the column the instance names came from (shown once, as the scenario)."""
    values = [e.get("values") if isinstance(e.get("values"), dict) else {} for e in entries]
    return bool(entries) and all(v.get(column) == e.get("instance") for v, e in zip(values, entries, strict=True))


def _rows(
    mem: _Memory, skey: str, build: str, columns: list[str], entries: list[dict[str, Any]], notices: list[str],
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


def _conductor_section(mem: _Memory, path: Path, doc: Any, index: int, notices: list[str]) -> dict[str, Any]:
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
    skey = f"state:{path.name}:b{index}"
    rows = _rows(mem, skey, build, columns, entries, notices)
    return _section(
        mem,
        skey,
        build,
        rows,
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


def _abandoned(entry: dict[str, Any]) -> dict[str, Any]:
    """A scenario of a killed conductor: running ones did not finish, pending ones never will."""
    if entry.get("state") == "running":
        return {**entry, "state": "done", "status": "red", "error": entry.get("error") or "its conductor was killed"}
    if entry.get("state") == "pending":
        return {**entry, "state": "cancelled"}
    return entry


def _discovered_sections(mem: _Memory, runs_root: Path, notices: list[str]) -> list[dict[str, Any]]:
    """Without a conductor state file: every ``<name>/<instance>/<name>_status.json``."""
    sections = []
    for top in (n for n in subdirs(runs_root) if not n.startswith(".")):
        entries = []
        for name in subdirs(runs_root / top):
            rel = f"{top}/{name}"
            snap = mem.instance(rel, top)
            record = f"{top}{STATUS_SUFFIX}"
            listed = snap.files.get(snap.instance_dir, {}) if snap is not None else {}
            kind = listed.get(record)
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


def collect_report(runs_root: str | Path) -> dict[str, Any]:
    """The template context for ``runs_root``, built only from what is on disk.

    One section per conductor state file; with none readable, one per discovered build or
    flow directory. ``live`` is true while any conductor says it is running. Rows whose
    entry and files are unchanged are the same objects as in the last context: read-only.
    """
    root = Path(runs_root).absolute()
    notices: list[str] = []
    sections: list[dict[str, Any]] = []
    with _LOCK:
        forget_folders()  # symlinks may have changed since the last report
        mem = _memory(root)
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
        "notices": list(dict.fromkeys(notices)),
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
    marker = secrets.token_hex(8)  # slots for the big parts, which skip the template
    pieces: dict[str, list[str]] = {}
    slots = []
    for i, section in enumerate(context["sections"]):
        slot = {}
        for name, part in section_parts(section).items():
            pieces[f"{i}:{name}"] = part
            slot[name] = Markup(f"<!--{marker}:{i}:{name}-->")
        slots.append(slot)
    frame = template.render(**context, parts=slots, nonce=secrets.token_urlsafe(18))
    return fill(frame, marker, pieces)


def write_report(runs_root: str | Path) -> Path:
    """Render the report for ``runs_root`` into ``<runs_root>/conductor_status_report.html`` atomically.

    A report that is not live also leaves its instances' roll-ups for ``ductaflow status``.
    """
    root = Path(runs_root)
    path = root / REPORT_NAME
    context = collect_report(root)
    atomic_write_text(path, render_report(context))
    if not context["live"]:
        _share_with_status(Path(context["runs_root"]))
    return path


def _share_with_status(root: Path) -> None:
    """Write the status cache (:mod:`ductaflow.summaries`) from the instances this report read,
    when it read any since the last time: ``ductaflow status`` then reads none of them again."""
    with _LOCK:
        mem = _memory(root)
        if mem.instances.reads == mem.shared:
            return
        mem.shared = mem.instances.reads
        cache = SummaryCache(root, load=False)
        prefix = mem.root + os.sep
        for (inst, build), reading in mem.instances.items():
            top, _, name = inst[len(prefix) :].partition(os.sep)
            record = os.path.join(inst, f"{build}{STATUS_SUFFIX}")
            if top != build or top.startswith(".") or not name or os.sep in name:
                continue  # status lists <runs>/<build>/<instance>/<build>_status.json only
            kind = reading.snapshot.files.get(inst, {}).get(f"{build}{STATUS_SUFFIX}")
            if kind == FILE or (kind is not None and os.path.exists(record)):
                cache.put(f"{top}/{name}", inst, reading, summary_row(reading.snapshot))
        cache.save()


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
