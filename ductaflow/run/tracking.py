"""A run's experiment-tracker runs, driven by its lifecycle (:mod:`ductaflow.trackers`).

When the run starts, each tracker starts a run of its own (params: the flattened config; tags:
flow, instance, scenario values, sweep, git commit) whose binding goes into the ``running``
record. When it ends: the metrics the flow recorded, its executed notebook and log, the light
as a tag, and ``finish``. A tracker that raises is recorded like a failing hook (a
:class:`~ductaflow.store.result.HookFailure` named ``tracker:<name>``) and never loses the run.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ductaflow.core.clock import now_iso
from ductaflow.core.context import RunContext
from ductaflow.core.lights import Status
from ductaflow.core.params import flat_keys
from ductaflow.core.settings import tool_table
from ductaflow.errors import ConfigError
from ductaflow.store.result import FlowResult, HookFailure, TrackerBinding
from ductaflow.trackers.base import RunHandle, TrackerAdapter
from ductaflow.trackers.registry import check_names, make_tracker, quiet

log = logging.getLogger(__name__)

SCOPES = ("all", "builds")
#: Adapters made in this process, by (name, runs root): one serves every run here.
_MADE: dict[tuple[str, str | None], TrackerAdapter] = {}


def project_trackers(project_root: str | Path | None) -> tuple[tuple[str, ...], str, bool]:
    """``[tool.ductaflow] trackers``, ``track`` (all flows, or only builds) and ``tracker_offline``."""
    table = tool_table(project_root)
    where = f"{project_root}/pyproject.toml: tool.ductaflow"
    listed = table.get("trackers", [])
    if not isinstance(listed, list) or not all(isinstance(n, str) for n in listed):
        raise ConfigError(f"{where}.trackers must be a list of tracker names")
    scope = table.get("track", "all")
    if scope not in SCOPES:
        raise ConfigError(f"{where}.track = {scope!r}: expected one of {', '.join(SCOPES)}")
    return check_names(listed, f"{where}.trackers"), str(scope), bool(table.get("tracker_offline", False))


class Tracking:
    """The trackers of one run and their handles."""

    def __init__(self, context: RunContext) -> None:
        names, scope, offline = project_trackers(context.project_root)
        self.names = tuple(dict.fromkeys([*names, *context.trackers]))
        self.scope, self.offline, self.context = scope, offline, context
        self.handles: list[tuple[TrackerAdapter, RunHandle]] = []
        self.failures: list[HookFailure] = []

    def _adapter(self, name: str) -> TrackerAdapter:
        key = (name, self.context.runs_root)
        if key not in _MADE:
            _MADE[key] = make_tracker(name, self.context.runs_root)
        return _MADE[key]

    def _call(self, name: str, method: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``, quietly; a failure is recorded and gives None."""
        try:
            with quiet(f"tracker {name}"):
                return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - a tracker never loses a run: it is recorded
            log.warning("tracker %s failed in %s: %s: %s", name, method, type(exc).__name__, exc)
            self.failures.append(HookFailure(f"tracker:{name}", method, f"{type(exc).__name__}: {exc}"[:2000],
                                             traceback.format_exc()[-20000:], now_iso()))  # fmt: skip
            return None

    @property
    def bindings(self) -> tuple[TrackerBinding, ...]:
        return tuple(h.binding(a.name) for a, h in self.handles)

    def parents(self) -> tuple[str, ...]:
        """What the runs this one starts (a build's steps) are nested under: ``backend:run id``."""
        return tuple(f"{a.name}:{h.id}" for a, h in self.handles)

    def start(self, result: FlowResult) -> FlowResult:
        """Start a tracker run per tracker; ``result`` with their bindings."""
        ctx = self.context
        if not self.names or (self.scope == "builds" and result.flow != ctx.build):
            return result
        project = Path(ctx.project_root).name if ctx.project_root else result.flow
        group = ctx.build or result.flow
        tags = {"flow": result.flow, "instance": result.instance or "", "sweep": ctx.sweep or ""}
        tags.update({f"scenario.{k}": str(v) for k, v in (ctx.scenario or {}).items()})
        git = result.provenance.git if result.provenance else None
        if git is not None and git.commit:
            tags["git_commit"] = git.commit
        config = _read_config(result)
        run_name = _run_name(result, ctx)
        parents = dict(p.split(":", 1) for p in ctx.tracker_parents if ":" in p)
        for name in self.names:
            adapter = self._call(name, "load", self._adapter, name)
            if adapter is None:
                continue
            mine = {**tags, "parent_run_id": parents[name]} if name in parents else tags
            handle = self._call(name, "init_run", adapter.init_run, project=project, group=group, tags=mine,
                                config=config, notes=None, offline=self.offline, where=result.execution_dir,
                                run_name=run_name)  # fmt: skip
            if handle is not None:
                self.handles.append((adapter, handle))
        return replace(result, trackers=self.bindings)

    def end(self, result: FlowResult, marked: Sequence[str | Path] = ()) -> None:
        """Log what the run left (its metrics; its notebook, log and the files it ``marked`` with
        :func:`ductaflow.artifacts`) and finish every tracker run."""
        if not self.handles:
            return
        metrics = _recorded_metrics(result.execution_dir)
        files = [("notebook", result.notebook_path), ("log", result.log_path)]
        files += [(Path(p).name, Path(p)) for p in marked]
        code = 0 if result.status is not Status.RED else 1
        for adapter, handle in self.handles:
            name = adapter.name
            if metrics:
                self._call(name, "log", adapter.log, handle, metrics)
            for label, path in files:
                if path.exists():
                    self._call(name, "log_artifact", adapter.log_artifact, handle, label, path)
            self._call(name, "set_tags", adapter.set_tags, handle, {"light": result.status.value})
            self._call(name, "finish", adapter.finish, handle, exit_code=code)


def _read_config(result: FlowResult) -> dict[str, Any]:
    try:
        doc = json.loads(result.config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(doc, dict):
        return {}
    return {k: v for k, v in flat_keys(doc).items() if not k.startswith("_")}  # not ductaflow's own keys


def _run_name(result: FlowResult, ctx: RunContext) -> str:
    """The instance dir relative to the runs root: unique, and leads back to the files."""
    if ctx.runs_root:
        try:
            return str(Path(result.execution_dir).resolve().relative_to(Path(ctx.runs_root).resolve()))
        except ValueError:
            pass
    return f"{result.flow}/{result.instance}"


def _recorded_metrics(instance_dir: Path) -> dict[str, Any]:
    # deferred: store.metrics imports pandas, which a run without a tracker never needs here
    from ductaflow.store.metrics import read_metrics

    out: dict[str, Any] = {}
    for values in read_metrics(instance_dir).values():
        out.update(values)
    return out


_STEPS: dict[str, int] = {}  # tracker run id -> the next step of live metrics from this process


def log_live(metrics: Mapping[str, Any]) -> None:
    """Metrics a flow records, logged to its tracker runs at once (``record()`` in a kernel
    ductaflow started): each call is the next step. Trackers that cannot log from another process
    (W&B holds its run open in the parent) get them when the flow ends; a failure is only logged."""
    ctx = RunContext.inherited()
    if ctx is None or not ctx.tracker_parents or not metrics:
        return
    where = Path(ctx.execution_dir) if ctx.execution_dir else Path.cwd()
    for entry in ctx.tracker_parents:
        name, _, run_id = entry.partition(":")
        try:
            with quiet(f"tracker {name}"):
                adapter = _MADE.get((name, ctx.runs_root)) or make_tracker(name, ctx.runs_root)
                _MADE[(name, ctx.runs_root)] = adapter
                handle = adapter.resume(TrackerBinding(name, run_id), where)
                if handle is not None:
                    step = _STEPS.get(run_id, 0)
                    adapter.log(handle, metrics, step=step)
                    _STEPS[run_id] = step + 1
        except Exception as exc:  # noqa: BLE001 - live metrics are a courtesy: the end logs them too
            log.warning("tracker %s could not log metrics live: %s: %s", name, type(exc).__name__, exc)
