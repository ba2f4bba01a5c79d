"""Run ONE flow into ONE instance directory and say truthfully how it went.

The kernel's working directory is the instance directory (set for that kernel alone,
never with ``os.chdir`` here); the flow's source file is only read. The run-or-skip
decision is made here, under the instance lock, once; the run's records are written by its
:class:`~ductaflow.run.recorder.Lifecycle` (a ``running`` record first, one final record).
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from ductaflow.core.clock import now_iso
from ductaflow.core.config import check_path, find_project_root, normalise_config
from ductaflow.core.context import RunContext
from ductaflow.core.failures import FailureKind, RetryPolicy
from ductaflow.core.fingerprint import Fingerprint, fingerprint
from ductaflow.core.flowfile import Flow, parameterise, read_flow, recorded_parameters, resolve_flow_path
from ductaflow.core.lights import Status
from ductaflow.core.names import validate_name
from ductaflow.errors import DuctaflowError, FlowFailed, WouldOverwrite
from ductaflow.kernels.kernelspecs import choose_kernel
from ductaflow.kernels.options import KernelOptions, kernel_options
from ductaflow.kernels.provisioner import remove_kernel_files, remove_template_dirs_once
from ductaflow.lifecycle import tracing
from ductaflow.run.attempts import classified, history, retrying
from ductaflow.run.decide import Decision, decide, still_current
from ductaflow.run.hints import config_notes, missing_default_hint
from ductaflow.run.hooked import refused, with_hooks
from ductaflow.run.notebook import Execution, Outcome, execute
from ductaflow.run.notebook_html import export_page, require_nbconvert
from ductaflow.run.planning import check_reserved_keys, run_context, seeded
from ductaflow.run.recorder import Lifecycle, running_record
from ductaflow.run.signals import Terminated
from ductaflow.run.usage import config_deps, with_usage
from ductaflow.store.atomic import atomic_write_json
from ductaflow.store.layout import artifact_path, artifact_paths, clear_artifacts, contained_dir
from ductaflow.store.locks import instance_lock
from ductaflow.store.records import read_status
from ductaflow.store.result import ErrorInfo, FlowResult, RunState

log = logging.getLogger(__name__)
#: Read for the project root when a nested run has no context (a user may set it too).
PROJECT_ROOT_ENV = "DUCTAFLOW_PROJECT_ROOT"


@dataclass(frozen=True)
class Plan:
    """One execution of one flow, decided before anything is written."""

    flow: Flow
    cfg: dict[str, Any]
    exec_dir: Path
    root: Path
    instance: str
    kernel_name: str | None
    context: RunContext
    kernel: KernelOptions
    timeout: float | None = None
    export_html: bool = False
    #: the kernelspec the flow runs in (notebook metadata); None: ductaflow's own Python kernel
    kernelspec: Mapping[str, str] | None = None


def run_notebook(
    notebook_file: str | Path,
    config: Mapping[str, Any] | str | Path | None = None,
    execution_dir: str | Path | None = None,
    project_root: str | Path | None = None,
    *,
    instance_name: str | None = None,
    timeout: float | None = None,
    export_html: bool = False,
    kernel_name: str | None = None,
    no_execute: bool = False,
    raise_on_failure: bool = True,
    force: bool | None = None,
    upstream: Sequence[str] = (),
    context: Mapping[str, Any] | RunContext | None = None,
    preload: Sequence[str] | None = None,
    hooks: Sequence[object] = (),
    hooks_fail: str | None = None,
    trackers: Sequence[str] = (),
    retries: int = 0,
    retry_on: Sequence[str] | str | None = None,
    backoff: float | None = None,
) -> FlowResult:
    """Execute a flow with papermill in its own instance directory and return the result.

    ``config=None`` means the flow's default config file (``config/<flows|builds>/<name>.json``
    or the path its ``flow_config``/``load_cli_config`` call names); ``{}`` means empty.

    An instance whose last green/orange run has the same fingerprint (code, config,
    ``upstream`` steps) and whose artifacts are present is not run again: the last result
    comes back with ``skipped=True``. ``force`` re-runs regardless (default: whether the run
    this one is nested in was forced). ``context`` (build, scenario, runs_root) labels the
    ledger record. ``preload`` names modules the kernel template imports once for every
    kernel it forks (see :mod:`ductaflow.kernels.options`). The flow runs in the kernelspec its
    notebook declares, or in ``kernel_name`` (see :mod:`ductaflow.kernels.kernelspecs`).

    Raises a :class:`~ductaflow.errors.DuctaflowError` subclass before writing anything
    when the input is bad, :class:`~ductaflow.errors.FlowFailed` when the flow ends red
    (unless ``raise_on_failure=False``), and re-raises ``KeyboardInterrupt`` (``Terminated``
    for SIGTERM) after the kernel is killed and the red record is written.

    ``hooks`` (strings ``package.module:Name``, classes or objects) run at the flow's start and
    end, after the project's (:mod:`ductaflow.lifecycle.hooks`), and in the runs nested in it;
    ``hooks_fail`` (``record``, ``red``, ``stop``) says what a hook that raises does to the run.
    A flow refused before it starts (a bad config, a missing file) still reaches ``on_flow_error``.
    ``trackers`` names experiment trackers (``noop``, ``mlflow``, ``wandb``) to log the run to,
    besides the project's ``[tool.ductaflow] trackers`` (:mod:`ductaflow.trackers`).
    ``retries``, ``retry_on``, ``backoff``: more attempts of a run red with a failure ``retry_on`` names
    (:class:`~ductaflow.core.failures.RetryPolicy`); each attempt's record has its number and history.
    """
    policy = RetryPolicy.of(retries, retry_on, backoff)
    try:
        plan = make_plan(
            notebook_file, config, execution_dir, project_root, instance_name=instance_name, timeout=timeout,
            export_html=export_html, kernel_name=kernel_name, force=force, context=context, preload=preload,
            hooks=hooks, hooks_fail=hooks_fail, trackers=trackers,
        )
    except DuctaflowError as exc:
        refused(notebook_file, execution_dir, project_root, context, hooks, hooks_fail, exc)
        raise
    if no_execute:
        return _prepare_only(plan)
    result = _run_attempts(plan, upstream, policy)
    if result.terminated:
        raise Terminated("SIGTERM")
    if result.interrupted:
        raise KeyboardInterrupt
    if result.status is Status.RED and raise_on_failure:
        raise FlowFailed(result)
    return result


def _run_attempts(plan: Plan, upstream: Sequence[str], policy: RetryPolicy) -> FlowResult:
    """``plan`` run once, or until an attempt is not red or ``policy`` says stop."""
    if not policy.retries:
        return run_plan(plan, upstream)
    attempt = partial(_run_attempt, plan, tuple(upstream))
    return retrying(policy, attempt, plan.context.attempt, f"{plan.flow.name} in {plan.exec_dir}")


def _run_attempt(plan: Plan, upstream: tuple[str, ...], attempt: int) -> FlowResult:
    """``plan`` run as attempt number ``attempt`` (its record lists the attempts before it)."""
    return run_plan(replace(plan, context=plan.context.child(attempt=attempt)), upstream)


def make_plan(
    notebook_file: str | Path,
    config: Mapping[str, Any] | str | Path | None,
    execution_dir: str | Path | None,
    project_root: str | Path | None,
    *,
    instance_name: str | None = None,
    timeout: float | None = None,
    export_html: bool = False,
    kernel_name: str | None = None,
    force: bool | None = None,
    context: Mapping[str, Any] | RunContext | None = None,
    preload: Sequence[str] | None = None,
    hooks: Sequence[object] = (),
    hooks_fail: str | None = None,
    trackers: Sequence[str] = (),
) -> Plan:
    """Check the input and decide every setting of a run; raises before anything is written."""
    inherited = RunContext.inherited()
    cfg = normalise_config(config)
    # Where runs land comes from the arguments and the project layout, never from the config.
    root_hint = project_root or (inherited and inherited.project_root) or os.environ.get(PROJECT_ROOT_ENV)
    if root_hint:
        check_path(root_hint, "project root")
    flow = read_flow(resolve_flow_path(notebook_file, root_hint))
    spec = choose_kernel(flow, kernel_name)  # the declared kernelspec, or the one asked for
    root = Path(root_hint).resolve() if root_hint else find_project_root(flow.path)
    check_reserved_keys(cfg, root)
    if instance_name is not None:
        validate_name(instance_name)
    if export_html:
        _require_nbconvert()
    if execution_dir is None:
        execution_dir = root / "runs" / flow.name / (instance_name or "default")
    ctx = with_hooks(run_context(context, inherited, root, force), hooks, hooks_fail, trackers)
    exec_dir = contained_dir(execution_dir, (ctx.runs_root, root / "runs"))  # no symlink out of a runs root
    if config is None:  # no config given: the flow's default config file, as in a notebook
        cfg = flow.default_config(root)
    cfg["_project_root"] = str(root)
    ctx = seeded(ctx, cfg, instance_name or exec_dir.name)
    return Plan(
        flow, cfg, exec_dir, root, instance_name or exec_dir.name, spec["name"] if spec else None, ctx,
        kernel_options(root, preload), timeout, export_html, spec,
    )


def run_plan(plan: Plan, upstream: Sequence[str] = (), decision: Decision | None = None) -> FlowResult:
    """Run ``plan`` under its instance lock unless it is up to date; never raises for a red flow.

    ``decision`` is a run-or-skip decision the caller already made for this instance (the
    conductor); it is trusted unless this run had to wait for the lock, when another
    process may have just run the instance and the decision is made again. Its fingerprint
    is the run's too: the flows a build names are not read a second time.
    """
    given = decision.fingerprint if decision is not None else None
    asked = plan.kernel_name if plan.kernel_name != plan.flow.kernel_name else None  # declared: in the code hash
    fp = given if given is not None else fingerprint(plan.flow, plan.cfg, plan.root, upstream, kernel=asked)
    waited: list[bool] = []
    try:
        plan.exec_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DuctaflowError(f"cannot create instance directory {plan.exec_dir}: {exc.strerror or exc}") from None
    with instance_lock(plan.exec_dir, plan.flow.name, waited):
        if decision is not None and (waited or not still_current(plan.exec_dir, plan.flow.name, decision)):
            decision = None  # another process ran the instance since the decision was made
        if decision is None:
            decision = decide(
                plan.exec_dir, plan.flow.name, fp, plan.cfg, force=plan.context.force, export_html=plan.export_html,
                root=plan.root,
            )
        if not decision.run and decision.record is not None:
            return _skip(plan, decision, bool(waited))
        log.info("running %s in %s: %s", plan.flow.name, plan.exec_dir, decision.text)
        return _run_locked(plan, fp, decision)


def _skip(plan: Plan, decision: Decision, waited: bool) -> FlowResult:
    assert decision.record is not None
    result = replace(
        decision.record,
        execution_dir=plan.exec_dir,
        skipped=True,
        reasons=(),
        notes=("waited for another run of this instance",) if waited else (),
    )
    log.info("up to date: %s in %s", plan.flow.name, plan.exec_dir)
    Lifecycle(plan.context).skipped(result)
    return result


def _prepare_only(plan: Plan) -> FlowResult:
    """``no_execute``: write the config and the parameterised notebook, run nothing."""
    # heavy: deferred until a flow is prepared or exported
    import nbformat

    notes = tuple(config_notes(plan.flow, plan.cfg, plan.root))
    plan.exec_dir.mkdir(parents=True, exist_ok=True)
    with instance_lock(plan.exec_dir, plan.flow.name):
        if not plan.context.force:
            _refuse_to_replace(plan)
        paths = _fresh_instance(plan)
        nbformat.write(parameterise(plan.flow, plan.cfg, plan.kernel_name, plan.kernelspec), str(paths["notebook"]))
    log.info("prepared %s in %s (not executed)", plan.flow.name, plan.exec_dir)
    return FlowResult(
        plan.flow.name, plan.flow.path, plan.exec_dir, Status.GREEN, RunState.PREPARED.value,
        instance=plan.instance, notes=notes,
    )


def _refuse_to_replace(plan: Plan) -> None:
    """``no_execute`` on an instance that holds a run (a status record or a log: finished,
    running or gone) would delete its notebook, log and record: refused unless forced. One
    that was only prepared before is prepared again."""
    paths = artifact_paths(plan.exec_dir, plan.flow.name)
    if not (paths["status"].exists() or paths["log"].exists()):
        return  # nothing ran here: at most an earlier --no-execute's notebook and config
    rec = read_status(paths["status"])
    kept = [paths[k].name for k in ("notebook", "html", "log", "status") if paths[k].exists()]
    what = f"a {rec.status.value} run ({rec.state})" if rec is not None else "files of an earlier run"
    raise WouldOverwrite(
        f"{plan.exec_dir} holds {what}: preparing it without running would delete {', '.join(kept)}; "
        "use --force (force=True) to replace them, or another instance"
    )


def _fresh_instance(plan: Plan) -> dict[str, Path]:
    """Clear an earlier run's artifacts (status first) and write this run's config."""
    try:
        plan.exec_dir.mkdir(parents=True, exist_ok=True)
        clear_artifacts(plan.exec_dir, plan.flow.name)
        paths = artifact_paths(plan.exec_dir, plan.flow.name)
        atomic_write_json(paths["config"], plan.cfg)
    except OSError as exc:
        raise DuctaflowError(f"cannot write to instance directory {plan.exec_dir}: {exc.strerror or exc}") from None
    return paths


def _run_locked(plan: Plan, fp: Fingerprint, decision: Decision) -> FlowResult:
    """Execute under the instance lock: a running record first, then exactly one final record."""
    flow, exec_dir = plan.flow, plan.exec_dir
    notes = tuple(config_notes(flow, plan.cfg, plan.root))
    for note in notes:
        log.warning("%s", note)
    earlier = history(plan.context.attempt, artifact_path(exec_dir, flow.name, "status"))
    paths = _fresh_instance(plan)
    nb = parameterise(flow, plan.cfg, plan.kernel_name, plan.kernelspec)
    inputs = config_deps(plan.cfg, plan.root, exec_dir, flow)  # as they are before the first cell
    t0 = time.monotonic()
    base = FlowResult(
        flow=flow.name, flow_path=flow.path, execution_dir=exec_dir, status=Status.RED,
        state=RunState.RUNNING.value, started=now_iso(), instance=plan.instance, notes=notes,
        fingerprint=fp.value, fingerprint_parts=fp.parts, reasons=decision.reasons, kernel=plan.kernel_name,
        sweep=plan.context.sweep, attempt=plan.context.attempt, history=earlier,
    )
    lifecycle = Lifecycle(plan.context)
    running = running_record(base, mode="papermill", project_root=plan.root)
    lifecycle.started(running)
    child = plan.context.child(
        build=plan.context.build or (flow.name if fp.flows else None), flow=flow.name, execution_dir=str(exec_dir),
        tracker_parents=lifecycle.tracking.parents() if lifecycle.tracking else (),
        trace_parent=tracing.traceparent(lifecycle.span) or plan.context.trace_parent,
    )
    cells = tracing.CellSpans(lifecycle.span) if lifecycle.span is not None else None
    outcome = _execute_safely(Execution(
        flow, nb, exec_dir, paths, plan.kernel_name, plan.timeout, child.env(), plan.kernel,
        sys_path=(str(flow.path.parent.resolve()), str(plan.root)), report_root=plan.root,
        parameters=recorded_parameters(plan.cfg, paths["config"].name), seed=plan.context.seed,
        cell_hooks=cells.hooks() if cells else {},
    ))
    if cells:
        cells.close()
    html_ok = plan.export_html and paths["notebook"].exists() and _export_html(paths["notebook"], paths["html"])
    result = replace(
        running, status=outcome.status, state=RunState.FINISHED.value, finished=now_iso(),
        duration=round(time.monotonic() - t0, 3), warnings=outcome.warnings, error=outcome.error,
        interrupted=outcome.interrupted, timed_out=outcome.timed_out, kernel_died=outcome.kernel_died,
        terminated=outcome.terminated, html_exported=bool(html_ok), peak_rss_mb=outcome.peak_rss_mb,
    )
    if outcome.error is not None:
        result = replace(result, error=missing_default_hint(flow, plan.cfg, plan.root, outcome.error))
    runs_root = Path(plan.context.runs_root) if plan.context.runs_root else plan.root / "runs"
    result = with_usage(result, root=plan.root, runs_root=runs_root, start=inputs, report=outcome.report)
    lifecycle.marked = tuple(str(p) for p in (outcome.report or {}).get("artifacts") or ())
    result = lifecycle.ended(classified(result, outcome.kind, outcome.phase))
    log.info("%s %s in %.1fs -> %s", result.status.emoji, flow.name, result.duration or 0, exec_dir)
    return result


def _execute_safely(ex: Execution) -> Outcome:
    """:func:`execute`, except that an error of ductaflow's own is a red outcome, not a missing record.

    Afterwards the kernel files of gone processes are swept: a build's kernel is stopped
    without its exit handlers, so those of the kernels it started (or pre-started) stay behind.
    """
    try:
        return execute(ex)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # a bug of ours must still end in a final record
        log.exception("running %s failed inside ductaflow", ex.flow.name)
        error = ErrorInfo(type(exc).__name__, str(exc), traceback.format_exc())
        return Outcome(Status.RED, error=error, kind=FailureKind.INFRASTRUCTURE.value)
    finally:
        remove_kernel_files()
        remove_template_dirs_once()


def run_step_flow(
    notebook_file: str | Path,
    step_name: str,
    instance_name: str,
    config: Mapping[str, Any] | str | Path | None = None,
    suffix: str = "",
    **kwargs: Any,
) -> FlowResult:
    """Run a flow into ``runs/<step_name>/<instance_name><suffix>/`` under the project root."""
    validate_name(step_name, "step name")
    instance = validate_name(f"{instance_name}{suffix}")
    cfg = normalise_config(config)
    inherited = RunContext.inherited()
    root_hint = kwargs.pop("project_root", None) or (inherited and inherited.project_root) or os.environ.get(
        PROJECT_ROOT_ENV
    )
    if root_hint:
        check_path(root_hint, "project root")
    flow_path = resolve_flow_path(notebook_file, root_hint)
    root = Path(root_hint).resolve() if root_hint else find_project_root(flow_path)
    return run_notebook(
        flow_path,
        None if config is None else cfg,  # None: the flow's default config, as run_notebook does
        execution_dir=root / "runs" / step_name / instance,
        project_root=root,
        instance_name=instance,
        **kwargs,
    )


def _require_nbconvert() -> None:
    require_nbconvert()


def _export_html(notebook: Path, html: Path) -> bool:
    """Render the executed notebook as a script-free page (see :mod:`ductaflow.run.notebook_html`)."""
    return export_page(notebook, html)
