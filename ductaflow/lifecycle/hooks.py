"""Your code at the moments of a run: hooks, called with typed events, that can never lose a run.

A hook is any object with some of these methods, each given one event:

- in the conductor process: ``on_sweep_start`` / ``on_sweep_end`` (a :class:`SweepEvent`),
  ``on_scenario_start``, ``on_scenario_end`` (green or orange), ``on_scenario_skip`` (up to
  date) and ``on_scenario_error`` (red, lost, never run), each a
  :class:`~ductaflow.lifecycle.events.ScenarioEvent`;
- in the process that runs a flow (a conductor worker, a Dask worker, a build's kernel for
  its steps, ``ductaflow run``, ``run_notebook``): ``on_flow_start``, ``on_flow_end`` (green or
  orange) and ``on_flow_error`` (red, interrupted, lost, or refused before it started), each a
  :class:`~ductaflow.lifecycle.events.RunEvent`.

Hooks come from ``[tool.ductaflow] hooks = ["package.module:Name"]``, then the
``ductaflow.hooks`` entry-point group, then the call (``conduct(hooks=...)``,
``run_notebook(hooks=...)``), in that order, each once. ``Name`` is a class (made with no
arguments, once per process) or an object. Every process makes its own: hooks share no state
between processes, and one given as an object is used as it is only in the process it was given
to. A hook that raises is recorded (:class:`~ductaflow.store.result.HookFailure`) and the run
goes on; ``hooks_fail`` says what else happens: ``record`` (nothing), ``red`` (the run is red)
or ``stop`` (red, and the conductor starts no further scenario).
"""

from __future__ import annotations

import importlib
import logging
import sys
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ductaflow.core.clock import now_iso
from ductaflow.core.provenance import entry_points_in
from ductaflow.core.settings import PYPROJECT, tool_table
from ductaflow.errors import ConfigError
from ductaflow.lifecycle.events import EventKind, RunEvent, ScenarioEvent
from ductaflow.store.result import HookFailure

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "ductaflow.hooks"
FAIL_POLICIES = ("record", "red", "stop")
#: The methods a hook may have, by where they are called.
COORDINATOR_METHODS = ("on_sweep_start", "on_sweep_end", "on_scenario_start", "on_scenario_end",
                       "on_scenario_skip", "on_scenario_error")  # fmt: skip
EXECUTION_METHODS = ("on_flow_start", "on_flow_end", "on_flow_error")

_FLOW_METHOD = {
    EventKind.STARTED: "on_flow_start",
    EventKind.FINISHED: "on_flow_end",
    EventKind.FAILED: "on_flow_error",
    EventKind.CANCELLED: "on_flow_error",
    EventKind.LOST: "on_flow_error",
}
_SCENARIO_METHOD = {
    EventKind.STARTED: "on_scenario_start",
    EventKind.FINISHED: "on_scenario_end",
    EventKind.SKIPPED: "on_scenario_skip",
    EventKind.FAILED: "on_scenario_error",
    EventKind.CANCELLED: "on_scenario_error",
    EventKind.LOST: "on_scenario_error",
}
#: Hooks made in this process, by import spec: each class is made once per process.
_MADE: dict[str, object] = {}


@dataclass(frozen=True)
class SweepEvent:
    """The start or end of one ``conduct`` call, in the conductor process."""

    kind: str  # "start" or "end"
    build: str
    sweep: str | None
    runs_root: str
    scenarios: int  # rows of the plan (replicates counted)
    to_run: int  # how many were not up to date
    state: str  # the conductor state: running, then finished, stopped or interrupted
    counts: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    at: str = field(default_factory=now_iso)

    @property
    def subject(self) -> str:
        return self.sweep or self.build


def check_policy(policy: str) -> str:
    """``policy`` when it is one of :data:`FAIL_POLICIES`, else a :class:`ConfigError`."""
    if policy not in FAIL_POLICIES:
        raise ConfigError(f"hooks_fail={policy!r}: expected one of {', '.join(FAIL_POLICIES)}")
    return policy


def spec_of(hook: object) -> str:
    """The import spec (``package.module:Name``) a hook given as a string, class or object is
    made from in other processes."""
    if isinstance(hook, str):
        _split(hook, "hook")
        return hook
    cls = hook if isinstance(hook, type) else type(hook)
    spec = f"{cls.__module__}:{cls.__qualname__}"
    if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
        raise ConfigError(
            f"hook {spec}: other processes cannot import it; define it in a module (e.g. "
            "hooks.py beside your flows) and give it as 'hooks:Name'"
        )
    return spec


def _split(spec: str, where: str) -> tuple[str, str]:
    module, sep, name = spec.partition(":")
    if not sep or not module or not name or not all(p.isidentifier() for p in [*module.split("."), *name.split(".")]):
        raise ConfigError(f"{where} {spec!r}: expected 'package.module:Name'")
    return module, name


def _import(module: str, project_root: str | Path | None) -> Any:
    """``module``; one that is not on the path is looked for at the project root too (a
    ``hooks.py`` beside ``pyproject.toml``), which is then put at the end of ``sys.path``."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        root = str(Path(project_root).resolve()) if project_root else None
        if root is None or exc.name != module.split(".")[0] or root in sys.path:
            raise
        sys.path.append(root)
        return importlib.import_module(module)


def load_object(spec: str, where: str, project_root: str | Path | None = None) -> Any:
    """The object ``package.module:Name`` names (a function, a class), imported as hooks are (the
    project root is looked in too); a :class:`ConfigError` naming ``where`` when it cannot be."""
    module, name = _split(spec, where)
    try:
        obj: Any = _import(module, project_root)
        for part in name.split("."):
            obj = getattr(obj, part)
    except Exception as exc:  # noqa: BLE001 - any failure to import it is the user's to fix
        raise ConfigError(f"{where} {spec!r} cannot be loaded: {type(exc).__name__}: {exc}") from None
    return obj


def _make(spec: str, where: str, project_root: str | Path | None = None) -> object:
    """The hook of ``spec`` in this process (made once); a :class:`ConfigError` naming ``where``
    when it cannot be imported or made."""
    if spec in _MADE:
        return _MADE[spec]
    obj = load_object(spec, where, project_root)
    try:
        hook = obj() if isinstance(obj, type) else obj
    except Exception as exc:  # noqa: BLE001 - any failure to make it is the user's to fix
        raise ConfigError(f"{where} {spec!r} cannot be loaded: {type(exc).__name__}: {exc}") from None
    _MADE[spec] = hook
    return hook


def _declared(project_root: str | Path | None) -> list[tuple[str, str]]:
    """(spec, where it was declared) of the project's and the installed packages' hooks."""
    table = tool_table(project_root)
    listed = table.get("hooks", [])
    where = f"{Path(project_root or '.') / PYPROJECT}: tool.ductaflow.hooks"
    if not isinstance(listed, list) or not all(isinstance(h, str) for h in listed):
        raise ConfigError(f"{where} must be a list of 'package.module:Name' strings")
    found = [(h, f"hook {where} entry") for h in listed]
    return found + [(spec, f"entry point {name} of group {ENTRY_POINT_GROUP}") for spec, name in _entry_points()]


class Hooks:
    """The hooks of one run or sweep, and how a raising one is treated."""

    def __init__(self, hooks: Sequence[tuple[str, object]], policy: str = "record") -> None:
        self.hooks = list(hooks)
        self.policy = check_policy(policy)

    @classmethod
    def load(cls, project_root: str | Path | None, given: Iterable[object] = (), policy: str = "record") -> Hooks:
        """The project's hooks, the entry points', then ``given`` (strings, classes or objects), each once."""
        chosen: dict[str, object] = {}
        for spec, where in _declared(project_root):
            chosen.setdefault(spec, _make(spec, where, project_root))
        for hook in given:
            spec = spec_of(hook)
            if not isinstance(hook, (str, type)):
                _MADE.setdefault(spec, hook)  # an object given here is this process's hook of its spec
            chosen.setdefault(spec, hook if not isinstance(hook, (str, type)) else _make(spec, "hook", project_root))
        return cls(list(chosen.items()), policy)

    @property
    def specs(self) -> tuple[str, ...]:
        return tuple(spec for spec, _ in self.hooks)

    def __bool__(self) -> bool:
        return bool(self.hooks)

    def call(self, method: str, event: object) -> tuple[HookFailure, ...]:
        """Call ``method`` of every hook that has it with ``event``; the ones that raised."""
        failures = []
        for spec, hook in self.hooks:
            fn = getattr(hook, method, None)
            if fn is None:
                continue
            try:
                fn(event)
            except Exception as exc:  # noqa: BLE001 - a hook never loses a run: it is recorded
                log.warning("hook %s.%s failed on %s: %s: %s", spec, method, getattr(event, "subject", "?"),
                            type(exc).__name__, exc)
                failures.append(HookFailure(spec, method, f"{type(exc).__name__}: {exc}"[:2000],
                                            traceback.format_exc()[-20000:], now_iso()))
        return tuple(failures)

    def flow(self, event: RunEvent) -> tuple[HookFailure, ...]:
        """The flow-level method for a run's event (none for a skip)."""
        method = _FLOW_METHOD.get(event.kind)
        return self.call(method, event) if method else ()

    def scenario(self, event: ScenarioEvent) -> tuple[HookFailure, ...]:
        method = _SCENARIO_METHOD.get(event.kind)
        return self.call(method, event) if method else ()

    def sweep(self, event: SweepEvent) -> tuple[HookFailure, ...]:
        return self.call(f"on_sweep_{event.kind}", event)


@lru_cache(maxsize=1)
def _entry_points() -> tuple[tuple[str, str], ...]:
    """(spec, name) of the installed packages' hooks, read once per process (and scanned only when
    a ``sys.path`` folder changed: :func:`~ductaflow.core.provenance.entry_points_in`)."""
    return entry_points_in(ENTRY_POINT_GROUP)
