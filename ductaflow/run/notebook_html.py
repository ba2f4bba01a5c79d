"""An executed notebook as a web page that is as safe as the report, with its failing cell anchored.

nbconvert's ``lab`` template renders the page; ductaflow's template on top of it drops every
``<script>`` the template itself would load (require.js, MathJax, Mermaid, widgets) and puts a
strict Content-Security-Policy first in ``<head>``: no script runs on the page at all, so
neither a JavaScript output nor HTML that a config value, a printed line or an exception message
smuggled into an output can do anything. The failing code cell is wrapped in an element with
the id the report links to (:data:`FAILED_CELL_ANCHOR`). The page is written atomically beside
the notebook, as ``<flow>.html``; the status record is never touched (its run owns it).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ductaflow.core.flowfile import ERROR_MARKER_TAG
from ductaflow.core.lights import Status
from ductaflow.errors import DuctaflowError, MissingExtra
from ductaflow.store.atomic import atomic_write_text
from ductaflow.store.layout import FLOWS_SUBDIR, artifact_path, contained_dir
from ductaflow.store.locks import instance_lock
from ductaflow.store.records import InstanceSummary, read_status, summarize_instance
from ductaflow.store.result import FlowResult, RunState

log = logging.getLogger(__name__)

#: The policy of the report's own page, without its script nonce: no script at all.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
#: The id of the element holding the failing cell (the id papermill's banner used before, so
#: the report's links and the banner's own "In [n]" link land on the cell itself).
FAILED_CELL_ANCHOR = "papermill-error-cell"
#: Which flows get a page: ``failed`` (red and orange), ``all``, ``none``.
POLICIES = ("failed", "all", "none")
_MARK = "ductaflow_failed_cell"  # cell metadata set on the in-memory copy only
_TEMPLATE_NAME = "ductaflow_notebook.html.j2"
_TEMPLATE = (
    "{%- extends 'index.html.j2' -%}\n"
    "{%- block html_head -%}<meta http-equiv=\"Content-Security-Policy\" content=\"" + CSP + "\">"
    "{{ super() }}{%- endblock html_head -%}\n"
    "{%- block html_head_js -%}{%- endblock html_head_js -%}\n"
    "{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}\n"
    "{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}\n"
    "{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}\n"
    "{% block codecell %}{%- if cell.metadata.get('" + _MARK + "') -%}"
    '<div id="' + FAILED_CELL_ANCHOR + '" class="ductaflow-failed-cell">{{ super() }}</div>'
    "{%- else -%}{{ super() }}{%- endif -%}{% endblock codecell %}\n"
)


def require_nbconvert() -> None:
    """Raise :class:`MissingExtra` when nbconvert cannot be imported (a broken install)."""
    try:
        # heavy: deferred until a page is rendered
        import nbconvert  # noqa: F401
    except ImportError:
        raise MissingExtra("HTML rendering of notebooks", "html", "nbconvert") from None


def check_policy(policy: str) -> str:
    """``policy`` if it is one of :data:`POLICIES`; else a :class:`DuctaflowError` saying which are."""
    if policy not in POLICIES:
        raise DuctaflowError(f"html must be one of {', '.join(POLICIES)}, not {policy!r}")
    return policy


def wants_page(policy: str, status: Status) -> bool:
    """Whether a run that ended ``status`` gets a page under ``policy`` (see :data:`POLICIES`)."""
    check_policy(policy)
    return policy == "all" or (policy == "failed" and status in (Status.RED, Status.ORANGE))


def failing_cell(nb: Any) -> int | None:
    """The index of the cell a run stopped in: the code cell after papermill's anchor banner
    (not its note at the top, tagged alike), else the first code cell with an error output;
    None when no cell failed."""
    cells = nb.cells
    for i, cell in enumerate(cells):
        if _is_anchor_banner(cell):
            later = (j for j in range(i + 1, len(cells)) if cells[j].get("cell_type") == "code")
            found = next(later, None)
            if found is not None:
                return found
    errors = (
        i for i, c in enumerate(cells)
        if c.get("cell_type") == "code" and any(o.get("output_type") == "error" for o in c.get("outputs", []))
    )  # fmt: skip
    return next(errors, None)


def _is_anchor_banner(cell: Any) -> bool:
    tags = cell.get("metadata", {}).get("tags", [])
    return (
        cell.get("cell_type") == "markdown" and ERROR_MARKER_TAG in tags
        and f'id="{FAILED_CELL_ANCHOR}"' in "".join(cell.get("source", ""))
    )


def _marked(nb: Any) -> Any:
    """A copy of ``nb`` with its failing cell marked and the banner's own anchor id removed."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        cell.get("metadata", {}).pop(_MARK, None)
    at = failing_cell(nb)
    for cell in nb.cells:
        if _is_anchor_banner(cell):
            cell.source = "".join(cell.source).replace(f'id="{FAILED_CELL_ANCHOR}"', "")
    if at is not None:
        nb.cells[at].setdefault("metadata", {})[_MARK] = True
    return nb


def render(nb: Any, title: str | None = None) -> str:
    """The page for notebook node ``nb``: nbconvert's lab template, no script, strict CSP."""
    # heavy: nbconvert and jinja2, deferred until a page is rendered
    import jinja2
    import nbconvert  # heavy: deferred with the line above

    exporter = nbconvert.HTMLExporter(
        template_name="lab",
        template_file=_TEMPLATE_NAME,
        extra_loaders=[jinja2.DictLoader({_TEMPLATE_NAME: _TEMPLATE})],
    )
    resources: dict[str, Any] = {"metadata": {"name": title}} if title else {}
    body, _ = exporter.from_notebook_node(_marked(nb), resources=resources)
    head = body[: body.find("</head>")]
    if "Content-Security-Policy" not in head or "<script" in head.lower():
        raise DuctaflowError("nbconvert's template changed: the page lost its Content-Security-Policy")
    return str(body)


def export_page(notebook: Path, page: Path) -> bool:
    """Render ``notebook`` into ``page`` atomically; a failure is logged, never fatal."""
    try:
        # heavy: deferred until a page is rendered
        import nbformat

        nb = nbformat.read(str(notebook), as_version=4)
        atomic_write_text(page, render(nb, notebook.stem))
        return True
    except Exception as exc:  # noqa: BLE001 - a page is a convenience; the run's record stands
        log.warning("HTML rendering of %s failed: %s", notebook, exc)
        return False


def render_flow(exec_dir: Path, flow: str) -> Path | None:
    """Render one flow's executed notebook in ``exec_dir`` under its instance lock (a run of
    it finishes first); returns the page, or None when there is no notebook or rendering failed.
    Raises :class:`~ductaflow.errors.UnsafePath` for a folder that leads out of its runs root."""
    exec_dir = contained_dir(exec_dir)
    notebook = artifact_path(exec_dir, flow, "notebook")
    page = artifact_path(exec_dir, flow, "html")
    with instance_lock(exec_dir, flow):
        if not notebook.is_file():
            return None
        return page if export_page(notebook, page) else None


def _finished(records: Iterable[FlowResult | None]) -> list[FlowResult]:
    return [r for r in records if r is not None and r.state in (RunState.FINISHED, RunState.GONE)]


def render_instance(
    instance_dir: Path,
    build: str,
    policy: str = "failed",
    *,
    refresh: bool = False,
    summary: InstanceSummary | None = None,
) -> list[Path]:
    """Pages for a build instance's build notebook and flows that ``policy`` picks.

    A page newer than its notebook is kept unless ``refresh``. ``summary`` is the instance's,
    when the caller has just read it. nbconvert is imported only when a page is wanted: a
    sweep of greens under ``failed`` never loads it (~0.2 s of each pool worker's first build).
    Returns the pages written.
    """
    if policy == "none":
        return []
    summary = summary or summarize_instance(instance_dir, build)
    wanted = [rec for rec in _finished([summary.build, *summary.flows]) if wants_page(policy, rec.status)]
    if wanted:
        require_nbconvert()
    written = []
    for rec in wanted:
        notebook = artifact_path(rec.execution_dir, rec.flow, "notebook")
        page = artifact_path(rec.execution_dir, rec.flow, "html")
        if not refresh and _fresh(page, notebook):
            continue
        done = render_flow(rec.execution_dir, rec.flow)
        if done is not None:
            written.append(done)
    return written


def _fresh(page: Path, notebook: Path) -> bool:
    try:
        return page.stat().st_mtime_ns >= notebook.stat().st_mtime_ns
    except OSError:
        return False


def flows_in(exec_dir: Path) -> list[str]:
    """The flows with a readable status record in ``exec_dir``."""
    suffix = artifact_path(Path(), "", "status").name
    names = sorted(p.name[: -len(suffix)] for p in exec_dir.glob(f"*{suffix}") if len(p.name) > len(suffix))
    return [n for n in names if read_status(exec_dir / f"{n}{suffix}", exec_dir) is not None]


def notebooks_in(instance_dir: Path, flow: str | None = None) -> list[tuple[Path, str]]:
    """(folder, flow) of every recorded run in ``instance_dir`` and, for a build instance, in
    its ``runs/<flow instance>/`` folders; only those of ``flow`` (a flow or folder name) if given."""
    folders = [instance_dir]
    sub = instance_dir / FLOWS_SUBDIR
    if sub.is_dir():
        folders += sorted(p for p in sub.iterdir() if p.is_dir())
    found = [(folder, name) for folder in folders for name in flows_in(folder)]
    if flow is not None:
        found = [(d, n) for d, n in found if flow in (n, d.name)]
    return found
