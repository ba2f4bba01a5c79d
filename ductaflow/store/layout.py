"""The instance directory layout: which files ductaflow owns, and where it may write."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

from ductaflow.core.config import check_path
from ductaflow.errors import UnsafePath

log = logging.getLogger(__name__)

#: The runs root's own folder (ledger, conductor state): marks a directory as a runs root.
RUNS_MARKER = ".ductaflow"

#: The files ductaflow owns for one flow in one instance directory: kind -> name suffix
#: after the flow's name (``prepare_zones`` + ``_status.json``).
ARTIFACTS = {
    "notebook": ".ipynb",
    "html": ".html",
    "log": "_execution_output.txt",
    "config": "_config.json",
    "status": "_status.json",
}
ARTIFACT_SUFFIXES = tuple(ARTIFACTS.values())
STATUS_SUFFIX = ARTIFACTS["status"]
LOG_SUFFIX = ARTIFACTS["log"]
CONFIG_SUFFIX = ARTIFACTS["config"]
#: Results a flow records (``record``/``record_table``), beside its other files.
METRICS_SUFFIX = "_metrics.parquet"
TABLE_INFIX = "_table_"
#: A build's flows run in ``<build instance>/runs/<flow instance>/``.
FLOWS_SUBDIR = "runs"
#: The steps a build's latest run reached, in order (written by ``step``), in FLOWS_SUBDIR.
STEPS_FILE = ".steps.json"
#: ``ductaflow debug``'s notebook and config, beside the recorded run's files.
DEBUG_NOTEBOOK_SUFFIX = "_debug.ipynb"
DEBUG_CONFIG_SUFFIX = "_debug_config.json"
#: Files under the runs root.
REPORT_NAME = "conductor_status_report.html"
RESULTS_NAME = "results.parquet"
STATE_DIR = Path(RUNS_MARKER) / "conductor"
#: Beside ``<build>.json`` in STATE_DIR: the row changes since that snapshot (see ``store.sweep_state``).
STATE_JOURNAL_SUFFIX = ".journal.jsonl"
#: The attempt files of each conductor's tasks, one folder per conduct() call, in STATE_DIR.
ATTEMPTS_DIR = STATE_DIR / "attempts"
SPOOL_DIR = Path(RUNS_MARKER) / "spool"
#: One ``<sweep>.json`` per conduct() call: its search state (see ``store.sweeps``).
SWEEPS_DIR = Path(RUNS_MARKER) / "sweeps"
LEDGER_DIR = Path(RUNS_MARKER) / "ledger"
PROBE_DIR = Path(RUNS_MARKER) / "probe"
STATUS_CACHE = Path(RUNS_MARKER) / "status_cache.json"
#: The report template's compiled code, kept by Jinja2 between processes.
TEMPLATE_CACHE = Path(RUNS_MARKER) / "cache" / "jinja"
#: Flows parsed by earlier processes, by file signature (see ``store.flow_cache``).
FLOW_CACHE = Path(RUNS_MARKER) / "flows.json"
#: One ``<env hash>.json`` per Python environment runs were made in (see ``store.envs``).
ENVS_DIR = Path(RUNS_MARKER) / "envs"


def artifact_name(flow: str, kind: str) -> str:
    """The file name of one of ``flow``'s files (a key of :data:`ARTIFACTS`)."""
    return f"{flow}{ARTIFACTS[kind]}"


def artifact_path(execution_dir: Path, flow: str, kind: str) -> Path:
    """The path of one of ``flow``'s files (a key of :data:`ARTIFACTS`) in ``execution_dir``."""
    return execution_dir / artifact_name(flow, kind)


def flow_of_artifact(name: str, kind: str) -> str | None:
    """The flow name in an artifact's file name, or None when ``name`` is not that kind of file."""
    suffix = ARTIFACTS[kind]
    return name[: -len(suffix)] if name.endswith(suffix) and len(name) > len(suffix) else None


def lock_path(execution_dir: Path, flow: str) -> Path:
    """The instance lock a run holds while it runs (see :mod:`ductaflow.store.locks`)."""
    return execution_dir / f".{flow}.lock"


def metrics_path(execution_dir: Path, flow: str) -> Path:
    return execution_dir / f"{flow}{METRICS_SUFFIX}"


def table_path(execution_dir: Path, flow: str, name: str) -> Path:
    return execution_dir / f"{flow}{TABLE_INFIX}{name}.parquet"


def steps_path(build_dir: Path) -> Path:
    return build_dir / FLOWS_SUBDIR / STEPS_FILE


def runs_root_of(path: Path) -> Path | None:
    """The nearest runs root (a folder holding ``.ductaflow``) at or above ``path``, if any."""
    path = Path(os.path.abspath(path))
    if (path / RUNS_MARKER).is_dir():
        return path
    above = _runs_roots_above(path)
    return above[0] if above else None


def _runs_roots_above(path: Path) -> list[Path]:
    """Ancestors of ``path`` that hold a runs root's ``.ductaflow`` folder, nearest first."""
    return [p for p in path.parents if (p / RUNS_MARKER).is_dir()]


def contained_dir(path: str | Path, runs_roots: Iterable[str | Path | None] = ()) -> Path:
    """``path`` resolved, refusing one that sits in a runs root but leads out of it by a symlink.

    A runs root is one of ``runs_roots`` or any ancestor holding ``.ductaflow``. A directory
    lexically inside one must resolve inside it (the root itself may be a symlink, say to a
    bigger disk): ductaflow deletes and writes in instance directories, and a link planted
    there must not make it delete or overwrite files elsewhere. Paths outside every runs
    root (an ``--output-dir`` the user chose) are taken as given. A NUL character in ``path`` or
    a runs root is refused too (no file system allows one).
    """
    check_path(path, "directory")
    given = [r for r in runs_roots if r]
    for r in given:
        check_path(r, "runs root")
    lexical = Path(os.path.abspath(path))
    resolved = lexical.resolve()
    roots = [Path(os.path.abspath(r)) for r in given] + _runs_roots_above(lexical)
    for root in roots:
        if root != lexical and root not in lexical.parents:
            continue
        real_root = root.resolve()
        if resolved != real_root and real_root not in resolved.parents:
            raise UnsafePath(
                f"{lexical} is inside the runs root {root} but leads to {resolved} through a symlink; "
                "ductaflow does not write or delete outside the runs root (remove the link)"
            )
    return resolved


def artifact_paths(execution_dir: Path, flow: str) -> dict[str, Path]:
    """The files ductaflow owns for one flow in one instance directory."""
    return {kind: artifact_path(execution_dir, flow, kind) for kind in ARTIFACTS}


def clear_artifacts(execution_dir: Path, flow: str) -> None:
    """Remove an earlier run's artifacts so none of them survives beside the new ones.

    The status record goes first: a crash part-way leaves no record claiming completion.
    Only names inside ``execution_dir`` are removed: a symlink among them is removed itself
    (its target is never touched), and nothing is removed through a symlinked sub-folder.
    """
    paths = artifact_paths(execution_dir, flow)
    home = execution_dir.resolve()
    # Also the results the earlier run recorded (record / record_table) and a build's list of
    # the steps its last run reached (this run writes its own).
    extra = [steps_path(execution_dir), metrics_path(execution_dir, flow)]
    victims = [paths[k] for k in ("status", "notebook", "html", "log", "config")]
    for path in [*victims, *extra, *execution_dir.glob(f"{flow}{TABLE_INFIX}*.parquet")]:
        parent = path.parent.resolve()
        if parent != home and home not in parent.parents:
            log.warning("not removing %s: its folder leads out of %s", path, execution_dir)
            continue
        try:
            path.unlink()
        except FileNotFoundError:
            pass
