"""Run ONE flow into ONE instance directory and say truthfully how it went.

The kernel's working directory is the instance directory (set for that kernel alone,
never with ``os.chdir`` here); the flow's source file is only read. Artifacts:
``<flow>.ipynb``, ``<flow>_execution_output.txt``, ``<flow>_config.json``,
``<flow>_status.json`` (written last, atomically) and optionally ``<flow>.html``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ductaflow import __version__
from ductaflow.capture import OutputSink
from ductaflow.config import find_project_root, load_config_file, normalise_config
from ductaflow.errors import DuctaflowError, FlowFailed, MissingExtra
from ductaflow.flow import Flow, parameterise, read_flow
from ductaflow.incremental import Decision, Fingerprint, decide, fingerprint, instance_lock
from ductaflow.kernels import KernelOptions, kernel_options
from ductaflow.ledger import append_run
from ductaflow.ledger import warm_up as warm_up_ledger
from ductaflow.models import ErrorInfo, FlowResult, Status
from ductaflow.rundir import artifact_paths, atomic_write_json, clear_artifacts, contained_dir, validate_name
from ductaflow.status import classify

log = logging.getLogger(__name__)
#: Set in every flow's process so nested runs (a build's flows) find the project root.
PROJECT_ROOT_ENV = "DUCTAFLOW_PROJECT_ROOT"
#: Set by a forced parent (``--force``) so a build's nested flows re-run too.
FORCE_ENV = "DUCTAFLOW_FORCE"
#: JSON {build, scenario, runs_root} a parent hands to nested runs for their ledger records.
CONTEXT_ENV = "DUCTAFLOW_CONTEXT"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def now_iso() -> str:
    """UTC timestamp with milliseconds, as stored in status records."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def resolve_flow_path(notebook_file: str | Path, project_root: str | Path | None) -> Path:
    """A flow path as given (relative to the cwd), else relative to the project root."""
    p = Path(notebook_file)
    if not p.is_absolute() and not p.exists() and project_root:
        candidate = Path(project_root) / p
        if candidate.exists():
            return candidate
    return p


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
    context: Mapping[str, Any] | None = None,
    preload: Sequence[str] | None = None,
) -> FlowResult:
    """Execute a flow with papermill in its own instance directory and return the result.

    ``config=None`` means the flow's default config file (``config/<flows|builds>/<name>.json``
    or the path its ``flow_config``/``load_cli_config`` call names); ``{}`` means empty.

    An instance whose last green/orange run has the same fingerprint (code, config,
    ``upstream`` steps) and whose artifacts are present is not run again: the last result
    comes back with ``skipped=True``. ``force`` re-runs regardless (default: the
    ``DUCTAFLOW_FORCE`` environment a forced parent sets). ``context`` (build, scenario,
    runs_root) only labels the ledger record. ``preload`` names modules the kernel
    template imports once for every kernel it forks (see :mod:`ductaflow.kernels`).

    Raises a :class:`~ductaflow.errors.DuctaflowError` subclass before writing anything
    when the input is bad, :class:`~ductaflow.errors.FlowFailed` when the flow ends red
    (unless ``raise_on_failure=False``), and re-raises ``KeyboardInterrupt`` after the
    kernel is killed and the red ``interrupted`` status is written.
    """
    cfg = normalise_config(config)
    root_hint = project_root or cfg.get("_project_root") or os.environ.get(PROJECT_ROOT_ENV)
    flow = read_flow(resolve_flow_path(notebook_file, root_hint))
    root = Path(root_hint).resolve() if root_hint else find_project_root(flow.path)
    if instance_name is not None:
        validate_name(instance_name)
    if export_html:
        _require_nbconvert()
    if execution_dir is None:
        execution_dir = root / "runs" / flow.name / (instance_name or "default")
    ctx = _ledger_context(context, root)
    exec_dir = contained_dir(execution_dir, (ctx["runs_root"], root / "runs"))  # no symlink out of a runs root
    if config is None:  # no config given: the flow's default config file, as in a notebook
        default = flow.default_config_path(root)
        if default is not None and default.is_file():
            cfg = load_config_file(default)
    cfg["_project_root"] = str(root)
    if force is None:
        force = os.environ.get(FORCE_ENV) == "1"
    kernel = kernel_options(root, preload)
    if no_execute:
        return _prepare_only(flow, cfg, exec_dir, root, instance_name, kernel_name)

    fp = fingerprint(flow, cfg, root, upstream)
    waited: list[bool] = []
    try:
        exec_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DuctaflowError(f"cannot create instance directory {exec_dir}: {exc.strerror or exc}") from None
    with instance_lock(exec_dir, flow.name, waited):
        decision = decide(exec_dir, flow.name, fp, cfg, force=force, export_html=export_html)
        if not decision.run and decision.record:
            result = replace(
                FlowResult.from_record(decision.record, exec_dir),
                skipped=True,
                reasons=(),
                notes=("waited for another run of this instance",) if waited else (),
            )
            log.info("up to date: %s in %s", flow.name, exec_dir)
            append_run(ctx, result, event="skip")
            return result
        log.info("running %s in %s: %s", flow.name, exec_dir, decision.text)
        child_ctx = {**ctx, "build": ctx.get("build") or (flow.name if fp.flows else None)}
        env = {CONTEXT_ENV: json.dumps(child_ctx, default=str), FORCE_ENV: "1" if force else "0"}
        run = _Run(flow, cfg, exec_dir, root, instance_name, kernel_name, fp, decision, env, kernel)
        result = _run_locked(run, timeout, export_html)
    append_run(ctx, result, event="run")
    if result.interrupted:
        raise KeyboardInterrupt
    if result.status is Status.RED and raise_on_failure:
        raise FlowFailed(result)
    return result


def _prepare_only(
    flow: Flow, cfg: dict[str, Any], exec_dir: Path, root: Path, instance_name: str | None, kernel_name: str | None
) -> FlowResult:
    """``no_execute``: write the config and the parameterised notebook, run nothing."""
    import nbformat

    notes = tuple(_unknown_key_notes(flow, cfg, root))
    paths = _fresh_instance(flow, cfg, exec_dir)
    nbformat.write(parameterise(flow, cfg, kernel_name), str(paths["notebook"]))
    log.info("prepared %s in %s (not executed)", flow.name, exec_dir)
    instance = instance_name or exec_dir.name
    return FlowResult(flow.name, flow.path, exec_dir, Status.GREEN, "prepared", instance=instance, notes=notes)


def _fresh_instance(flow: Flow, cfg: dict[str, Any], exec_dir: Path) -> dict[str, Path]:
    """Clear an earlier run's artifacts (status first) and write this run's config."""
    try:
        exec_dir.mkdir(parents=True, exist_ok=True)
        clear_artifacts(exec_dir, flow.name)
        paths = artifact_paths(exec_dir, flow.name)
        atomic_write_json(paths["config"], cfg)
    except OSError as exc:
        raise DuctaflowError(f"cannot write to instance directory {exec_dir}: {exc.strerror or exc}") from None
    return paths


@dataclass(frozen=True)
class _Run:
    """Everything one execution needs, decided before the kernel starts."""

    flow: Flow
    cfg: dict[str, Any]
    exec_dir: Path
    root: Path
    instance_name: str | None
    kernel_name: str | None
    fp: Fingerprint
    decision: Decision
    env: dict[str, str]
    kernel: KernelOptions


def _run_locked(run: _Run, timeout: float | None, export_html: bool) -> FlowResult:
    """Execute under the instance lock; the status record is written last, atomically."""
    flow, cfg, exec_dir, root, fp = run.flow, run.cfg, run.exec_dir, run.root, run.fp
    instance_name, kernel_name, decision = run.instance_name, run.kernel_name, run.decision
    notes = tuple(_unknown_key_notes(flow, cfg, root))
    for note in notes:
        log.warning("%s", note)
    paths = _fresh_instance(flow, cfg, exec_dir)
    nb = parameterise(flow, cfg, kernel_name)
    instance = instance_name or exec_dir.name
    started, t0 = now_iso(), time.monotonic()
    base = {
        "flow": flow.name,
        "flow_path": str(flow.path),
        "execution_dir": str(exec_dir),
        "instance": instance,
        # what is being run and why, so a record a lost worker leaves behind still says it
        "fingerprint": fp.value,
        "fingerprint_parts": fp.parts,
        "reasons": list(decision.reasons),
    }
    atomic_write_json(paths["status"], _running_record(base, started))
    outcome = _execute(flow, nb, exec_dir, paths, kernel_name, timeout, root, run.env, run.kernel)
    html_ok = False
    if export_html and paths["notebook"].exists():
        html_ok = _export_html(paths["notebook"], paths["html"])
    result = FlowResult(
        flow=flow.name,
        flow_path=flow.path,
        execution_dir=exec_dir,
        status=outcome["status"],
        state="finished",
        started=started,
        finished=now_iso(),
        duration=round(time.monotonic() - t0, 3),
        warnings=tuple(outcome["warnings"]),
        error=outcome["error"],
        interrupted=outcome["interrupted"],
        timed_out=outcome["timed_out"],
        kernel_died=outcome["kernel_died"],
        instance=instance,
        notes=notes,
        html_exported=html_ok,
        fingerprint=fp.value,
        fingerprint_parts=fp.parts,
        peak_rss_mb=outcome["peak_rss_mb"],
        reasons=decision.reasons,
    )
    write_status(result, mode="papermill")
    log.info("%s %s in %.1fs -> %s", result.status.emoji, flow.name, result.duration or 0, exec_dir)
    return result


def _ledger_context(context: Mapping[str, Any] | None, root: Path) -> dict[str, Any]:
    """Who this run belongs to (build, scenario) and where the ledger lives, for nested runs too."""
    inherited: dict[str, Any] = {}
    raw = os.environ.get(CONTEXT_ENV)
    if raw:
        with contextlib.suppress(ValueError):
            inherited = json.loads(raw)
    ctx = {**inherited, **(context or {})}
    ctx.setdefault("runs_root", str(root / "runs"))
    ctx["project_root"] = str(root)
    return ctx


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
    root_hint = kwargs.pop("project_root", None) or cfg.get("_project_root") or os.environ.get(PROJECT_ROOT_ENV)
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


def write_status(result: FlowResult, mode: str) -> None:
    """Write the final status record atomically (the last artifact of a run)."""
    rec = result.to_record()
    rec.update(_host_facts(), mode=mode)
    atomic_write_json(result.status_path, rec)


def _running_record(base: dict[str, Any], started: str) -> dict[str, Any]:
    # A crash leaves this behind: red, state "running", the pid that owned it.
    return {**base, "schema": 1, "status": "red", "state": "running", "started": started, **_host_facts()}


def _host_facts() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "python": sys.version.split()[0],
        "ductaflow_version": __version__,
    }


def _execute(
    flow: Flow,
    nb: Any,
    exec_dir: Path,
    paths: dict[str, Path],
    kernel_name: str | None,
    timeout: float | None,
    root: Path,
    extra_env: Mapping[str, str],
    kernel: KernelOptions,
) -> dict[str, Any]:
    """Run the parameterised notebook; classify whatever happens. Never leaves a kernel."""
    from ductaflow.engine import ENGINE_NAME, KernelHandle, papermill  # it imports papermill lean

    pm = papermill()
    warm_up_ledger()  # now: the kernel's start-up is mostly waiting, not a race for the GIL
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    sink = OutputSink(paths["log"])
    handle = KernelHandle(watch_dir=exec_dir)
    timer = threading.Timer(timeout, handle.expire) if timeout else None
    error: ErrorInfo | None = None
    raised = kernel_died = timed_out = interrupted = False
    env = {
        **os.environ,
        "DUCTAFLOW_FLOW": flow.name,
        "DUCTAFLOW_EXECUTION_DIR": str(exec_dir),
        PROJECT_ROOT_ENV: str(root),
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        **extra_env,
    }
    try:
        with _sigterm_as_interrupt():
            if timer:
                timer.daemon = True
                timer.start()
            pm.execute_notebook(
                nb,
                str(paths["notebook"]),
                engine_name=ENGINE_NAME,
                kernel_name=kernel_name,
                progress_bar=False,
                request_save_on_cell_execute=True,
                execution_timeout=math.ceil(timeout) if timeout else None,  # nbclient wants an int
                resources={"metadata": {"path": str(exec_dir)}},
                sink=sink,
                handle=handle,
                use_current_python=kernel_name is None,
                kernel_env=env,
                kernel_options=kernel,
            )
    except PapermillExecutionError as exc:
        raised = True
        message = _ANSI.sub("", str(exc.evalue))
        if not message and not exc.traceback:  # the error reply came, its details did not
            message = "the kernel reported an error but sent no details (out of memory?)"
        error = ErrorInfo(
            type=exc.ename,
            message=message,
            traceback=_ANSI.sub("", "\n".join(exc.traceback or [])),
            cell_index=_flow_cell_index(flow, exc.cell_index),
        )
        interrupted = exc.ename == "KeyboardInterrupt"
    except DeadKernelError as exc:
        kernel_died = True
        error = ErrorInfo("DeadKernelError", str(exc) or "kernel died", "", _last_started_cell(flow, paths))
    except (CellTimeoutError, TimeoutError) as exc:
        timed_out = True
        error = ErrorInfo("Timeout", str(exc).strip().splitlines()[0] if str(exc).strip() else "timed out")
    except KeyboardInterrupt:
        interrupted = True
        error = ErrorInfo("KeyboardInterrupt", "interrupted", "", _last_started_cell(flow, paths))
    except Exception as exc:  # noqa: BLE001 - the kernel could not start or the engine broke
        raised = True
        error = ErrorInfo(type(exc).__name__, str(exc), traceback.format_exc())
    finally:
        if timer:
            timer.cancel()
        peak_rss = handle.peak_rss_mb()
        handle.release()
        sink.close()
    if handle.expired:  # the watchdog's SIGINT surfaces as a KeyboardInterrupt: still a timeout
        timed_out, kernel_died, raised, interrupted = True, False, False, False
        error = ErrorInfo("Timeout", f"flow exceeded its timeout of {timeout}s", "", _last_started_cell(flow, paths))
    elif handle.stopped:  # stopped from another thread (a conductor's Ctrl-C): an interruption
        timed_out, kernel_died, raised, interrupted = False, False, False, True
        error = ErrorInfo("KeyboardInterrupt", "interrupted", "", _last_started_cell(flow, paths))
    status = classify(
        raised=raised, kernel_died=kernel_died, timed_out=timed_out, interrupted=interrupted, warnings=sink.warnings
    )
    return {
        "status": status,
        "warnings": sink.warnings,
        "error": error,
        "interrupted": interrupted,
        "timed_out": timed_out,
        "kernel_died": kernel_died,
        "peak_rss_mb": peak_rss,
    }


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt while a kernel runs, so it is killed, not orphaned."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not signal.SIG_DFL:
        yield
        return

    def _raise(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _flow_cell_index(flow: Flow, executed_index: int | None) -> int | None:
    """Map an index in the executed notebook back to the flow file (skip the injected cell)."""
    if executed_index is None:
        return None
    return executed_index - 1 if executed_index > flow.parameters_index else executed_index


def _last_started_cell(flow: Flow, paths: dict[str, Path]) -> int | None:
    """The flow cell that was running when the kernel went away, read from the saved notebook."""
    try:
        import nbformat

        nb = nbformat.read(str(paths["notebook"]), as_version=4)
    except Exception:  # noqa: BLE001 - no notebook saved yet
        return None
    last = None
    for i, cell in enumerate(nb.cells):
        if cell.get("metadata", {}).get("papermill", {}).get("start_time"):
            last = i
    return _flow_cell_index(flow, last)


def _unknown_key_notes(flow: Flow, cfg: dict[str, Any], root: Path) -> list[str]:
    """Config keys the flow does not declare (in its parameters cell or default config)."""
    declared = set(flow.parameters_defaults())
    default_path = flow.default_config_path(root)
    if default_path and default_path.is_file():
        with contextlib.suppress(DuctaflowError):
            declared |= set(load_config_file(default_path))
    if not declared:
        return []
    unknown = sorted(k for k in cfg if not k.startswith("_") and k not in declared)
    if not unknown:
        return []
    return [f"config keys not known to flow '{flow.name}': {', '.join(unknown)}"]


def _require_nbconvert() -> None:
    try:
        import nbconvert  # noqa: F401
    except ImportError:
        raise MissingExtra("HTML export", "html", "nbconvert") from None


def _export_html(notebook: Path, html: Path) -> bool:
    """Render the executed notebook to HTML; a failure is logged, never fatal."""
    try:
        import nbconvert
        import nbformat

        body, _ = nbconvert.HTMLExporter().from_notebook_node(nbformat.read(str(notebook), as_version=4))
        html.write_text(body, encoding="utf-8")
        return True
    except Exception as exc:  # noqa: BLE001
        log.warning("HTML export of %s failed: %s", notebook, exc)
        return False
