"""Shared helpers for the flow-execution tests: tmp projects, flow files, kernel hunting (from procs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

# Kernel hunting lives in procs.py (by process kind and owner, not by a path in a command line).
from procs import is_forked_kernel, is_spare, kernels_mentioning, my_kernels  # noqa: F401 - re-exported

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


def all_files(directory: Path) -> set[str]:
    """Every path below ``directory``, relative, as strings (for before/after comparisons)."""
    return {str(p.relative_to(directory)) for p in directory.rglob("*")}


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo`` with a throwaway identity; its output, stripped (raises on failure)."""
    out = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    return out.stdout.strip()
