"""Builds: flows run in order inside a build instance, each into ``runs/<flow instance>/``.

Called from a build flow's own code (its kernel's working directory is the build instance
dir), so a downstream flow reads its upstream's files as ``../<upstream instance>/...``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ductaflow.core.config import deep_merge, find_project_root, normalise_config
from ductaflow.core.context import RunContext
from ductaflow.core.flowfile import read_flow, resolve_flow_path
from ductaflow.core.names import validate_name
from ductaflow.run.execute import run_notebook
from ductaflow.store.atomic import atomic_write_json
from ductaflow.store.layout import FLOWS_SUBDIR, steps_path
from ductaflow.store.records import current_steps
from ductaflow.store.result import FlowResult

log = logging.getLogger(__name__)
#: Fingerprints of the steps already run per build dir in this process (the build's kernel):
#: each step's fingerprint covers the steps it ran after, so a change flows downstream.
#: Re-running a step (a notebook cell run twice) forgets what came after it.
_UPSTREAM: dict[Path, list[tuple[str, str]]] = {}


def step(
    flow: str | Path,
    instance: str | None = None,
    config: Mapping[str, Any] | None = None,
    *,
    build_dir: str | Path | None = None,
    timeout: float | None = None,
    export_html: bool = False,
    retries: int = 0,
    retry_on: Sequence[str] | str | None = None,
    backoff: float | None = None,
    **overrides: Any,
) -> FlowResult:
    """Run one flow of a build into ``<build_dir>/runs/<instance>/`` and return its result.

    The flow's config is its default config file (as a notebook opened on its own would
    load it), with ``config`` merged over it and then ``overrides`` (keyword arguments win):
    a step need only give what differs. ``instance`` defaults to the flow's file name.
    ``build_dir`` defaults to the current directory, which inside a build is its instance
    dir. A red flow raises ``FlowFailed``, which stops the build and makes it red; an orange
    flow lets the build go on. A step after another re-runs when that one's fingerprint or
    the files it left changed (its ``outputs`` digest).

    ``retries`` more attempts are made of a step that ends red with a failure ``retry_on``
    names (failure kinds, default ``kernel_died``, ``worker_lost``, ``timeout``, ``start_failed``,
    or exception type names such as ``"ConnectionError"``), ``backoff`` seconds apart (doubled
    each time, with jitter); a flow's own error is not retried unless its type is named. The
    step's light is its last attempt's; each attempt's record has its number and history.
    """
    given = deep_merge(normalise_config(config), normalise_config(overrides, "step overrides"))
    cfg = deep_merge(_defaults(flow), given)
    name = validate_name(instance or Path(flow).stem, "flow instance name")
    base = (Path(build_dir) if build_dir is not None else Path.cwd()).resolve()
    upstream = _UPSTREAM.setdefault(base, [])
    names = [n for n, _ in upstream]
    if name in names:
        del upstream[names.index(name) :]
    _note_step(base, name)
    result = run_notebook(
        flow,
        cfg,
        execution_dir=base / FLOWS_SUBDIR / name,
        instance_name=name,
        timeout=timeout,
        export_html=export_html,
        raise_on_failure=True,
        upstream=tuple(fp for _, fp in upstream),
        retries=retries,
        retry_on=retry_on,
        backoff=backoff,
    )
    if result.fingerprint:
        upstream.append((name, f"{result.fingerprint}:{result.outputs}" if result.outputs else result.fingerprint))
    log.info("%s %s (%s) %.1fs", result.status.emoji, name, result.flow, result.duration or 0)
    return result


def _defaults(flow: str | Path) -> dict[str, Any]:
    """The flow's default config file, or {} when it has none."""
    ctx = RunContext.inherited()
    root_hint = (ctx and ctx.project_root) or None
    parsed = read_flow(resolve_flow_path(flow, root_hint))
    return parsed.default_config(Path(root_hint) if root_hint else find_project_root(parsed.path))


def _note_step(base: Path, name: str) -> None:
    """Add ``name`` to the build's step list before it runs (so a red step is listed too)."""
    steps = current_steps(base) or []
    if name in steps:  # the same step run again (a notebook cell re-run): forget what followed
        del steps[steps.index(name) :]
    atomic_write_json(steps_path(base), [*steps, name])
