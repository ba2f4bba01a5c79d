"""The live traffic-light report: the collected context -> self-contained HTML, written atomically.

Pure reading and rendering; never imports execution. Links are relative to the report
(which sits in the runs root) and never leave it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Any

from markupsafe import Markup

from ductaflow.core.names import validate_name
from ductaflow.report.charts import results_view
from ductaflow.report.collect import REPORT_LOCK, collect_report, light_totals, memory_of
from ductaflow.report.html import fill, section_parts
from ductaflow.report.lineage import search_tree
from ductaflow.report.links import FILE, href
from ductaflow.report.paged import chunk_text, detail_chunks, details_dir, is_paged, paged_parts
from ductaflow.report.status_cache import SummaryCache, summary_row
from ductaflow.store.atomic import atomic_write_text
from ductaflow.store.layout import REPORT_NAME, RUNS_MARKER, STATE_DIR, STATUS_SUFFIX, TEMPLATE_CACHE

__all__ = ["REPORT_NAME", "STATE_DIR", "collect_report", "generate_status_report", "href", "render_report",
           "write_report"]  # fmt: skip

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- rendering and writing
@lru_cache(maxsize=4)
def _environment(compiled: str | None = None) -> Any:
    """The report's Jinja2 environment; with ``compiled``, a folder where Jinja2 keeps the template's
    compiled code, keyed by its source (compiling it took 0.09 s of every process that writes a
    report; a no-op conductor re-run takes ~0.85 s)."""
    # heavy: Jinja2, deferred until a report is rendered
    from jinja2 import Environment, FileSystemBytecodeCache, PackageLoader, StrictUndefined, select_autoescape

    return Environment(
        loader=PackageLoader("ductaflow.report", "templates"),
        bytecode_cache=FileSystemBytecodeCache(compiled) if compiled else None,
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _compiled_dir(runs_root: Path | None) -> str | None:
    """``<runs root>/.ductaflow/cache/jinja`` when the runs root is one (never making a folder a
    runs root, nor writing outside it)."""
    if runs_root is None or not (runs_root / RUNS_MARKER).is_dir():
        return None
    folder = runs_root / TEMPLATE_CACHE
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return str(folder)


def render_report(context: dict[str, Any], details_href: str | None = None, runs_root: Path | None = None) -> str:
    """Render the context to one HTML page (fresh CSP nonce per render). With ``details_href``
    (where the details files sit, relative to the page), sections above ``PAGED_AT`` scenarios
    are drawn from data (:mod:`ductaflow.report.paged`); without it the page is self-contained."""
    template = _environment(_compiled_dir(runs_root)).get_template("report.html.j2")
    marker = secrets.token_hex(8)  # slots for the big parts, which skip the template
    pieces: dict[str, list[str]] = {}
    slots = []
    for i, section in enumerate(context["sections"]):
        slot = {}
        section["paged"] = details_href is not None and is_paged(section)
        parts = paged_parts(section, details_href) if section["paged"] and details_href else section_parts(section)
        for name, part in parts.items():
            pieces[f"{i}:{name}"] = part
            slot[name] = Markup(f"<!--{marker}:{i}:{name}-->")
        slots.append(slot)
    paged = any(section["paged"] for section in context["sections"])  # its details load by script elements
    frame = template.render(**context, parts=slots, nonce=secrets.token_urlsafe(18), paged=paged)
    return fill(frame, marker, pieces)


def write_report(runs_root: str | Path, sweep: str | None = None) -> Path:
    """Render the report for ``runs_root`` into ``<runs_root>/conductor_status_report.html`` atomically;
    with ``sweep``, only that sweep's scenarios, into ``conductor_status_report.sweep-<id>.html``.

    A report that is not live also leaves its instances' roll-ups for ``ductaflow status``.
    """
    root = Path(runs_root)
    path = root / (REPORT_NAME if sweep is None else sweep_report_name(sweep))
    context = collect_report(root, sweep)
    folder = details_dir(path.name)
    page = render_report(context, folder.as_posix(), root)
    with REPORT_LOCK:
        _write_details(root / folder, [s for s in context["sections"] if s["paged"]])
    atomic_write_text(path, page)
    if not context["live"]:
        _share_with_status(Path(context["runs_root"]))
        with REPORT_LOCK:  # the next process starts from these rows (see ductaflow.report.row_store)
            memory_of(Path(context["runs_root"])).keep_rows({s["skey"]: s["build"] for s in context["sections"]})
    return path


MANIFEST = "manifest.json"  # details file -> the key of what it was made from


def _write_details(folder: Path, sections: list[dict[str, Any]]) -> None:
    """The details files of the paged sections, written before the page that loads them. One
    whose rows are what its manifest entry says it was made from is left as it is (a rewrite,
    or a fresh process over unchanged instances, renders and writes only what changed); files
    of sections or chunks that are gone are removed."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        manifest = manifest if isinstance(manifest, dict) else {}
    except (OSError, ValueError):
        manifest = {}
    kept: dict[str, str] = {}
    wanted: set[str] = set()
    for section in sections:
        for name, (key, rows) in detail_chunks(section).items():
            wanted.add(name)
            path = folder / name
            if key is None or manifest.get(name) != key or not path.is_file():
                atomic_write_text(path, chunk_text(section, rows))
            if key is not None:
                kept[name] = key
    if folder.is_dir():
        for stale in folder.glob("*.js"):
            if stale.name not in wanted:
                stale.unlink(missing_ok=True)
    if kept != manifest and (kept or manifest):
        atomic_write_text(folder / MANIFEST, json.dumps(kept))


def sweep_report_name(sweep: str) -> str:
    """The file name of the report narrowed to one sweep (the id checked like an instance name)."""
    stem, _, ext = REPORT_NAME.rpartition(".")
    return f"{stem}.sweep-{validate_name(sweep, 'sweep id')}.{ext}"


def _share_with_status(root: Path) -> None:
    """Write the status cache (:mod:`ductaflow.report.status_cache`) from the instances this report read,
    when it read any since the last time: ``ductaflow status`` then reads none of them again."""
    with REPORT_LOCK:
        mem = memory_of(root)
        if mem.instances.reads == mem.shared:
            return
        mem.shared = mem.instances.reads
        cache = SummaryCache(root)  # rows of instances this process did not read are kept
        prefix = mem.root + os.sep
        for (inst, build), reading in mem.instances.items():
            top, _, name = inst[len(prefix) :].partition(os.sep)
            record = os.path.join(inst, f"{build}{STATUS_SUFFIX}")
            if top != build or top.startswith(".") or not name or os.sep in name:
                continue  # status lists <runs>/<build>/<instance>/<build>_status.json only
            kind = reading.snapshot.files.get(inst, {}).get(f"{build}{STATUS_SUFFIX}")
            if kind == FILE or (kind is not None and os.path.exists(record)):
                cache.put(f"{top}/{name}", inst, reading, summary_row(reading.snapshot))
        cache.save(keep_unseen=True)


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
            section.update(rows=rows, totals=light_totals(rows), results=results_view(rows, section["spec"]),
                           tree=search_tree(rows, section["spec"]))
        context["sections"] = [s for s in context["sections"] if s["rows"]]
        context["totals"] = light_totals(r for s in context["sections"] for r in s["rows"])
    return render_report(context)
