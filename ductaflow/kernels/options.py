"""How flow kernels are started: forked from a warm template (default on Linux) or launched.

Every flow still gets a kernel process of its own, fresh and never reused; the launcher
only decides how that process comes to be. Settings, strongest first:

1. the ``preload`` argument of ``run_notebook`` / ``conduct`` (``--preload`` on the CLI);
2. the environment: ``DUCTAFLOW_KERNEL_LAUNCHER`` (``fork`` or ``spawn``) and
   ``DUCTAFLOW_PRELOAD`` (comma-separated module names);
3. the project's ``pyproject.toml``::

       [tool.ductaflow]
       kernel_launcher = "fork"          # or "spawn": a new interpreter per kernel
       preload = ["pandas", "numpy"]     # imported once by the template, inherited by every kernel

Where fork launching is unavailable (not Linux), kernels are launched normally.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ductaflow.core.settings import PYPROJECT, tool_table
from ductaflow.errors import ConfigError
from ductaflow.kernels.fork import supported

log = logging.getLogger(__name__)

LAUNCHER_ENV = "DUCTAFLOW_KERNEL_LAUNCHER"
PRELOAD_ENV = "DUCTAFLOW_PRELOAD"
LAUNCHERS = ("fork", "spawn")


@dataclass(frozen=True)
class KernelOptions:
    """How to start this flow's kernel: ``launcher`` and the template's ``preload`` modules."""

    launcher: str = "fork"
    preload: tuple[str, ...] = ()

    @property
    def forks(self) -> bool:
        return self.launcher == "fork" and supported()


def _module_names(values: Sequence[object], where: str) -> tuple[str, ...]:
    names = []
    for value in values:
        name = str(value).strip()
        if not name:
            continue
        if not all(part.isidentifier() for part in name.split(".")):
            raise ConfigError(f"{where}: preload entry {name!r} is not a module name")
        names.append(name)
    return tuple(dict.fromkeys(names))


def _project_settings(project_root: Path) -> tuple[str | None, tuple[str, ...] | None]:
    table = tool_table(project_root)
    launcher = table.get("kernel_launcher")
    preload = table.get("preload")
    where = f"{project_root / PYPROJECT}: tool.ductaflow"
    if preload is not None and (not isinstance(preload, list)):
        raise ConfigError(f"{where}.preload must be a list of module names")
    return (
        None if launcher is None else str(launcher),
        None if preload is None else _module_names(preload, where),
    )


def kernel_options(project_root: Path | None, preload: Sequence[str] | None = None) -> KernelOptions:
    """The launcher and preload for a flow of the project at ``project_root``."""
    launcher, project_preload = _project_settings(project_root) if project_root is not None else (None, None)
    launcher = os.environ.get(LAUNCHER_ENV) or launcher or "fork"
    if launcher not in LAUNCHERS:
        raise ConfigError(f"kernel launcher {launcher!r}: expected one of {', '.join(LAUNCHERS)}")
    if preload is not None:
        modules = _module_names(preload, "preload")
    elif os.environ.get(PRELOAD_ENV) is not None:
        modules = _module_names(os.environ[PRELOAD_ENV].split(","), PRELOAD_ENV)
    else:
        modules = project_preload or ()
    return KernelOptions(launcher, modules)
