"""Notes and hints about a run's config: keys the flow does not know, keys it missed."""

from __future__ import annotations

import contextlib
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from ductaflow.core.flowfile import INJECTED_AT_TOP, Flow, user_parameters
from ductaflow.errors import DuctaflowError
from ductaflow.store.result import ErrorInfo

_MISSING_NAME = {
    "NameError": re.compile(r"name '([^']+)' is not defined"),
    "KeyError": re.compile(r"^'([^']+)'$"),
}


def _default_config(flow: Flow, root: Path) -> dict[str, Any]:
    """The flow's default config; {} when it has none or it cannot be read (the run says why)."""
    with contextlib.suppress(DuctaflowError):
        return flow.default_config(root)
    return {}


def config_notes(flow: Flow, cfg: dict[str, Any], root: Path) -> list[str]:
    """What a run records and says about its config: keys the flow does not know, and a config
    given to a notebook without a parameters cell (injected at the top)."""
    notes = unknown_key_notes(flow, cfg, root)
    if flow.parameters_index is None and user_parameters(cfg):
        notes.append(f"{INJECTED_AT_TOP}; to choose where, {how_to_tag(flow.path)}")
    return notes


def how_to_tag(path: Path) -> str:
    """How to tag a cell ``parameters`` in the tools a file of this kind is edited with."""
    marker = '\'# %% tags=["parameters"]\' as the cell\'s marker line (Jupytext percent format)'
    if path.suffix != ".ipynb":
        return f"tag one cell 'parameters': write {marker}"
    return (
        "tag one cell 'parameters': in JupyterLab select the cell, open the Property Inspector (gear icon, "
        "right sidebar) and add the tag under Cell Tags; in VS Code use the cell's '...' menu, Add Cell Tag; "
        f"in a Jupytext .py pair write {marker}"
    )


def unknown_key_notes(flow: Flow, cfg: dict[str, Any], root: Path) -> list[str]:
    """Config keys the flow does not declare (in its parameters cell or default config)."""
    declared = set(flow.parameters_defaults()) | set(flow.parameter_names()) | set(_default_config(flow, root))
    if not declared:
        return []
    unknown = sorted(k for k in cfg if not k.startswith("_") and k not in declared)
    if not unknown:
        return []
    return [f"config keys not known to flow '{flow.name}': {', '.join(unknown)}"]


def missing_default_hint(flow: Flow, cfg: dict[str, Any], root: Path, error: ErrorInfo) -> ErrorInfo:
    """A ``NameError``/``KeyError`` for a key of the flow's default config that the given config
    lacks: say so, since a config passed to ``run_notebook`` is the whole config."""
    pattern = _MISSING_NAME.get(error.type)
    found = pattern.search(error.message) if pattern else None
    if found is None:
        return error
    name = found.group(1)
    path = flow.default_config_path(root)
    if path is None or name not in _default_config(flow, root) or name in cfg:
        return error
    shown = path.relative_to(root).as_posix() if root in path.parents else str(path)
    hint = (
        f" (hint: '{name}' is a key of {shown}, the flow's default config, which is not read when a config "
        "is given: pass it too, or run the flow with step(), which merges the given config over the defaults)"
    )
    return replace(error, message=error.message + hint)
