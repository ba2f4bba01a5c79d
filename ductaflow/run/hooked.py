"""The hooks and trackers of a run, settled before it starts (:mod:`ductaflow.lifecycle.hooks`,
:mod:`ductaflow.trackers`).

Hooks a caller gives travel to the runs nested in it as import specs in the
:class:`~ductaflow.core.context.RunContext`; each process makes its own from them. A hook that
cannot be loaded, or a tracker that is unknown or not installed, refuses the run before
anything is written (a ``ConfigError`` or ``MissingExtra``, exit 2).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ductaflow.core.config import find_project_root
from ductaflow.core.context import RunContext
from ductaflow.core.lights import Status
from ductaflow.errors import DuctaflowError
from ductaflow.lifecycle.events import EventKind, RunEvent
from ductaflow.lifecycle.hooks import Hooks, check_policy, spec_of
from ductaflow.run.tracking import Tracking
from ductaflow.store.result import ErrorInfo, FlowResult
from ductaflow.trackers.registry import check_names, make_tracker

log = logging.getLogger(__name__)


def with_hooks(
    ctx: RunContext, hooks: Sequence[object], hooks_fail: str | None, trackers: Sequence[str] = ()
) -> RunContext:
    """``ctx`` with the caller's ``hooks`` and ``trackers`` added to those it inherited and
    ``hooks_fail`` set; every hook and tracker of the run (the project's and the entry points'
    too) is loaded now, or a ConfigError (MissingExtra) says which."""
    specs = tuple(dict.fromkeys([*ctx.hooks, *(spec_of(h) for h in hooks)]))
    policy = check_policy(hooks_fail) if hooks_fail is not None else ctx.hooks_fail
    Hooks.load(ctx.project_root, [*ctx.hooks, *hooks], policy)  # objects given become this process's hooks
    names = check_names([*ctx.trackers, *trackers], "trackers")
    ctx = ctx.child(hooks=specs, hooks_fail=policy, trackers=names)
    for name in Tracking(ctx).names:
        make_tracker(name, ctx.runs_root)
    return ctx


def refused(
    notebook_file: str | Path,
    execution_dir: str | Path | None,
    project_root: str | Path | None,
    context: Mapping[str, Any] | RunContext | None,
    hooks: Sequence[object],
    hooks_fail: str | None,
    exc: DuctaflowError,
) -> None:
    """``on_flow_error`` for a run refused before it started (nothing was written for it). Best
    effort: when the hooks themselves cannot be loaded, or raise, that is logged."""
    inherited = context if isinstance(context, RunContext) else RunContext.inherited() or RunContext()
    try:
        root = Path(project_root) if project_root else Path(inherited.project_root or find_project_root(notebook_file))
        ctx = inherited.child(project_root=str(root))
        loaded = Hooks.load(ctx.project_root, [*ctx.hooks, *hooks], hooks_fail or ctx.hooks_fail)
    except (DuctaflowError, OSError, ValueError) as why:
        log.debug("no on_flow_error for the refused run of %s: %s", notebook_file, why)
        return
    flow = Path(notebook_file)
    result = FlowResult(
        flow=flow.stem, flow_path=flow, execution_dir=Path(execution_dir or "."), status=Status.RED,
        state="refused", error=ErrorInfo(type(exc).__name__, str(exc)),
    )
    for failure in loaded.flow(RunEvent.now(EventKind.FAILED, result, ctx)):
        log.warning("hook %s.%s raised on the refused run of %s: %s", failure.hook, failure.method, flow, failure.error)
