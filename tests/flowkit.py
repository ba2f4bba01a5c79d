"""Shared helpers for the flow-execution tests: tmp projects, flow files, kernel hunting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import psutil

PARAMS = "config = {}"


def make_project(tmp_path: Path, name: str = "proj") -> Path:
    """A project root with the marker file, ``flows/`` and ``config/flows/``."""
    root = tmp_path / name
    (root / "flows").mkdir(parents=True)
    (root / "config" / "flows").mkdir(parents=True)
    (root / "pyproject.toml").write_text("")
    return root


def write_flow(root: Path, name: str, body: str, params: str = PARAMS, config: dict[str, Any] | None = None) -> Path:
    """Write ``flows/<name>.py`` (a parameters cell, then ``body`` as cells split on ``# %%``)."""
    path = root / "flows" / f"{name}.py"
    path.write_text(f'# %% tags=["parameters"]\n{params}\n\n{textwrap.dedent(body).lstrip()}', encoding="utf-8")
    if config is not None:
        (root / "config" / "flows" / f"{name}.json").write_text(json.dumps(config))
    return path


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def ductaflow_cmd(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the ``ductaflow`` command in a fresh interpreter (the same venv)."""
    return subprocess.run(
        [sys.executable, "-m", "ductaflow", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )


def kernels_mentioning(text: str) -> list[psutil.Process]:
    """Live kernel processes whose command line or environment mentions ``text``."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
            launched = "ipykernel" in cmd and (text in cmd or text in str(proc.environ()))
            forked = "ductaflow/kernels/template.py" in cmd and text in proc.cwd()
            if launched or forked:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def is_forked_kernel(proc: psutil.Process) -> bool:
    """A kernel forked from a template: the template's command line, a template as parent."""
    parent = proc.parent()
    return (
        parent is not None
        and "ductaflow/kernels/template.py" in " ".join(proc.cmdline())
        and "ductaflow/kernels/template.py" in " ".join(parent.cmdline())
    )


def is_spare(proc: psutil.Process) -> bool:
    """A kernel forked ahead of need that no flow has taken yet (it waits in "/")."""
    return is_forked_kernel(proc) and proc.cwd() == "/"


def my_kernels() -> list[psutil.Process]:
    """Kernel processes that are descendants of this test process (launched or forked), except
    a pre-started spare waiting for the next flow (it is not any flow's kernel)."""
    kids = psutil.Process().children(recursive=True)
    out = []
    for p in kids:
        try:
            kernel = "ipykernel" in " ".join(p.cmdline()) or (is_forked_kernel(p) and not is_spare(p))
            if kernel and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.Error:
            continue
    return out


def all_files(directory: Path) -> set[str]:
    """Every path below ``directory``, relative, as strings (for before/after comparisons)."""
    return {str(p.relative_to(directory)) for p in directory.rglob("*")}
