"""A flow opened as a notebook works where its data is: an instance directory under ``runs/``.

JupyterLab (with Jupytext), VS Code and ``jupytext --execute`` start a flow's kernel in the
flow's own folder, so its relative outputs would land in ``flows/`` and its ``../upstream/``
inputs would not resolve. :func:`settle`, called by ``flow_config`` in such a kernel, moves the
kernel's working directory to ``runs/<flow>/interactive``, or to an instance the user names
(``instance=`` or :data:`INSTANCE_ENV`), and says where. Only the kernel's own process moves.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ductaflow.core.config import check_path, find_project_root
from ductaflow.core.context import RunContext
from ductaflow.core.names import check_component, validate_name
from ductaflow.errors import DuctaflowError
from ductaflow.store.layout import RUNS_MARKER, artifact_path, contained_dir
from ductaflow.store.records import read_status
from ductaflow.store.result import FlowResult, RunState

#: Names the instance to work in when ``flow_config`` is given no ``instance=``.
INSTANCE_ENV = "DUCTAFLOW_INSTANCE"
#: Where a flow opened as a notebook works by default: ``runs/<flow>/interactive``.
DEFAULT_INSTANCE = "interactive"
#: ``instance="latest"``: the most recently recorded instance of the flow anywhere under ``runs/``.
LATEST = "latest"
#: Set by Jupyter Server in every kernel it starts for a document: the document's path
#: (relative to the server's root directory); ipykernel copies it into ``__session__``.
SESSION_ENV = "JPY_SESSION_NAME"
RUNS_DIR = "runs"  # the project's runs root, as run_notebook's default
_SUFFIXES = (".py", ".ipynb")
HINT = (
    "  another instance: flow_config(..., instance=\"latest\" | \"<name>\" | \"<dir>\") or "
    f"{INSTANCE_ENV}, then run the parameters cell again; "
    "a recorded run with its exact config: ductaflow debug <instance dir>"
)


@dataclass(frozen=True)
class FlowGuess:
    """Which flow this notebook is, and what told us (shown in the printed line)."""

    name: str | None
    path: Path | None = None
    source: str = ""


@dataclass(frozen=True)
class Workdir:
    """Where the kernel works, and why; ``recorded_config`` when it is a chosen recorded instance."""

    path: Path
    root: Path
    flow: str | None
    why: str
    recorded_config: Path | None = None
    new: bool = False
    lines: tuple[str, ...] = ()  # what flow_config prints: where, and how to choose elsewhere


def detect_flow(
    user_ns: Mapping[str, Any],
    env: Mapping[str, str],
    cwd: Path,
    flow: str | Path | None = None,
    default_config_path: str | Path | None = None,
) -> FlowGuess:
    """Which flow file this kernel runs: ``flow`` given, else what the front end left behind.

    Order: ``flow`` (a name or a path), VS Code's ``__vsc_ipynb_file__`` (a notebook) and
    ``__file__`` (its interactive window), Jupyter Server's ``__session__`` /
    ``JPY_SESSION_NAME``, and last a flow file named like the default config file (in ``cwd``,
    else the project's ``flows/`` or ``builds/``).
    """
    if flow is not None:
        text = str(flow)
        if "/" in text or os.sep in text or text.endswith(_SUFFIXES):
            return _from_path(text, cwd, "flow=") or FlowGuess(check_component(Path(text).stem, "flow"), None, "flow=")
        return FlowGuess(check_component(text, "flow"), _find_file(text, cwd), "flow=")
    candidates = (
        (user_ns.get("__vsc_ipynb_file__"), "VS Code's notebook path"),
        (user_ns.get("__file__"), "VS Code's __file__"),
        (user_ns.get("__session__") or env.get(SESSION_ENV), f"the Jupyter session path ({SESSION_ENV})"),
    )
    for value, source in candidates:
        if isinstance(value, str) and value.endswith(_SUFFIXES):
            guess = _from_path(value, cwd, source)
            if guess is not None:
                return guess
    if default_config_path is not None:  # a kernel started by nbclient (jupytext --execute) is told nothing
        stem = Path(default_config_path).stem
        root = find_project_root(cwd)
        for folder in (cwd, root / "flows", root / "builds"):
            found = _find_file(stem, folder)
            if found is not None:
                return FlowGuess(stem, found, "the default config file's name")
    return FlowGuess(None)


def _from_path(value: str, cwd: Path, source: str) -> FlowGuess | None:
    """A flow path as a front end gives it: absolute, or relative to a folder at or above ``cwd``."""
    check_path(value, "flow path")
    p = Path(value).expanduser()
    if p.is_absolute():
        return FlowGuess(p.stem, p if p.is_file() else None, source)
    for base in (cwd, *cwd.parents):
        if (base / p).is_file():
            return FlowGuess(p.stem, (base / p).resolve(), source)
    return FlowGuess(p.stem, None, source) if p.stem else None


def _find_file(stem: str, cwd: Path) -> Path | None:
    """``<stem>.py`` or ``<stem>.ipynb`` in ``cwd``, else None."""
    for suffix in _SUFFIXES:
        p = cwd / f"{stem}{suffix}"
        if p.is_file():
            return p.resolve()
    return None


def latest_instance(runs_root: Path, flow: str) -> FlowResult | None:
    """The instance of ``flow`` whose record is newest (finished, else started), anywhere under
    ``runs_root`` (builds' flows too); runs still going and prepared-only ones are left out."""
    name = artifact_path(Path(), flow, "status").name
    best: tuple[str, FlowResult] | None = None
    for folder, dirs, files in os.walk(runs_root):
        dirs[:] = sorted(d for d in dirs if d != RUNS_MARKER)
        if name not in files:
            continue
        rec = read_status(Path(folder, name))
        if rec is None or rec.state in (RunState.RUNNING, RunState.PREPARED):
            continue
        key = rec.finished or rec.started or ""
        if best is None or key > best[0]:
            best = (key, rec)
    return best[1] if best else None


def choose_workdir(guess: FlowGuess, root: Path, cwd: Path, instance: str | Path | None) -> Workdir:
    """Where the kernel should work; pure (nothing is created or entered).

    ``instance``: ``"latest"``, an instance name (``runs/<flow>/<name>``) or a directory
    (relative to the project root); None: ``runs/<flow>/interactive``, unless the kernel
    already works in an instance of this flow or outside the project.
    """
    runs = root / RUNS_DIR
    flow = guess.name
    if instance is not None and _is_path(instance):
        target = contained_dir(root / Path(instance).expanduser(), [runs])
        if not target.is_dir():
            raise DuctaflowError(f"instance directory {target} not found (from {INSTANCE_ENV} or instance=)")
        return Workdir(target, root, flow, "the instance you chose", _recorded(target, flow))
    if flow is None:
        return Workdir(cwd, root, None, "cannot tell which flow this notebook is")
    if instance == LATEST:
        rec = latest_instance(runs, flow)
        if rec is None:
            raise DuctaflowError(
                f"no recorded instance of flow '{flow}' under {runs}: run it first "
                f"(ductaflow run, a build or the conductor) or choose instance=\"{DEFAULT_INSTANCE}\""
            )
        when = (rec.finished or rec.started or "?")[:19].replace("T", " ")
        target = contained_dir(rec.execution_dir, [runs])
        return Workdir(target, root, flow, f"latest recorded {flow}, {rec.status} {when}", _recorded(target, flow))
    if instance is not None:
        target = contained_dir(runs / flow / validate_name(str(instance)), [runs])
        return Workdir(target, root, flow, "the instance you chose", _recorded(target, flow), not target.exists())
    target = contained_dir(runs / flow / DEFAULT_INSTANCE, [runs])
    if cwd != target and (_works_in_instance_of(cwd, flow, runs) or not _inside(cwd, root)):
        return Workdir(cwd, root, flow, "the kernel's own directory")
    return Workdir(target, root, flow, "the default for a flow opened as a notebook", None, not target.exists())


def _is_path(instance: str | Path) -> bool:
    text = str(instance)
    return isinstance(instance, Path) or "/" in text or os.sep in text or text.startswith((".", "~"))


def _recorded(target: Path, flow: str | None) -> Path | None:
    """The config recorded for ``flow`` in ``target``, if any (a chosen instance's own config)."""
    if flow is None:
        return None
    path = artifact_path(target, flow, "config")
    return path if path.is_file() else None


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _works_in_instance_of(cwd: Path, flow: str, runs: Path) -> bool:
    """``cwd`` is an instance of ``flow`` already: ``runs/<flow>/*`` or a folder holding its records."""
    if not _inside(cwd, runs):
        return False
    if cwd.parent == runs / flow:
        return True
    return any(artifact_path(cwd, flow, kind).is_file() for kind in ("status", "config"))


def settle(
    default_config_path: str | Path | None,
    flow: str | Path | None = None,
    instance: str | Path | None = None,
) -> Workdir:
    """In an interactive kernel: pick the working directory and enter it; returns it, with the
    lines to print (where, and how to choose another).

    A kernel started by ductaflow (its run context names a flow) never moves.
    """
    cwd = Path.cwd().resolve()
    ctx = RunContext.inherited()
    guess = detect_flow(_user_ns(), os.environ, cwd, flow, default_config_path)
    root = find_project_root(guess.path if guess.path else cwd)
    if ctx is not None and ctx.flow:
        return Workdir(cwd, root, guess.name, "a ductaflow run's own directory")  # prints nothing
    chosen = instance if instance is not None else (os.environ.get(INSTANCE_ENV) or None)
    work = choose_workdir(guess, root, cwd, chosen)
    if work.path != cwd:
        work.path.mkdir(parents=True, exist_ok=True)
        os.chdir(work.path)  # allowed: this is the interactive kernel's own process
        _keep_imports(guess.path.parent if guess.path else None, root)
    return replace(work, lines=tuple(describe(work, guess, cwd)))


def _user_ns() -> Mapping[str, Any]:
    """The kernel's user namespace (where VS Code leaves the notebook's path), or {}."""
    # deferred: IPython is heavy, and loaded already in a kernel
    from IPython import get_ipython

    shell = get_ipython()
    return getattr(shell, "user_ns", None) or {}


def describe(work: Workdir, guess: FlowGuess, cwd: Path) -> list[str]:
    """The lines ``settle`` prints: where the kernel works and how to choose elsewhere."""
    where = _show(work.path, work.root)
    if work.flow is None:
        return [
            f"interactive session: staying in {where}: {work.why} (no notebook path from JupyterLab or VS Code); "
            f"name it: flow_config(config, ..., flow=\"<flow name>\"), or set {INSTANCE_ENV} to an instance directory"
        ]
    state = " (new)" if work.new else ""
    source = f"; flow {work.flow} from {guess.source}" if guess.source else ""
    moved = f", not {_show(cwd, work.root)}" if work.path != cwd else ""
    return [
        f"interactive session: working in {where}{state}: {work.why}{source}; outputs go here{moved}",
        HINT,
    ]


def _show(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if _inside(path, root) and path != root else str(path)


def _keep_imports(flow_dir: Path | None, root: Path) -> None:
    """After the move, the flow's folder and the project root stay importable (as under run_notebook)."""
    at = 1 if sys.path and sys.path[0] in ("", ".") else 0
    for folder in (flow_dir, root):
        if folder is None:
            continue
        real = os.path.realpath(folder)
        if any(isinstance(p, str) and p and os.path.realpath(p) == real for p in sys.path):
            continue
        sys.path.insert(at, str(folder))
        at += 1
