"""Drive one parameterised notebook through papermill and say truthfully how it ended.

Whatever happens (a raise, ``SystemExit``, a dead kernel, a timeout, Ctrl-C, SIGTERM, a
stop from another thread) comes back as an :class:`Outcome`; nothing raises out of here
but the interrupt, and no kernel process is left behind.
"""

from __future__ import annotations

import math
import os
import re
import threading
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ductaflow.core.failures import FailureKind, Phase, derive_kind
from ductaflow.core.flowfile import ERROR_MARKER_TAG, INJECTED_TAG, Flow
from ductaflow.core.lights import Status, classify
from ductaflow.kernels.options import KernelOptions
from ductaflow.run.capture import OutputSink
from ductaflow.run.signals import Terminated, sigterm_raises
from ductaflow.store.result import ErrorInfo

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass(frozen=True)
class Outcome:
    """How an execution ended, before it becomes a record."""

    status: Status
    warnings: tuple[str, ...] = ()
    error: ErrorInfo | None = None
    interrupted: bool = False
    timed_out: bool = False
    kernel_died: bool = False
    terminated: bool = False
    peak_rss_mb: float | None = None
    report: Mapping[str, Any] | None = None  # what the flow's process used (core.deps.report), if it said
    kind: str | None = None  # red: why (a FailureKind value)
    phase: str | None = None  # red: when (a Phase value)


@dataclass(frozen=True)
class Execution:
    """What a kernel execution needs, decided before it starts."""

    flow: Flow
    notebook: Any  # the parameterised NotebookNode
    exec_dir: Path
    paths: Mapping[str, Path]
    kernel_name: str | None
    timeout: float | None
    env: Mapping[str, str]
    kernel: KernelOptions
    #: Directories put on the kernel's ``sys.path`` right after its working directory, in
    #: this order: the flow file's directory, then the project root. The kernel's
    #: ``sys.path`` then starts with: instance directory, flow directory, project root (each
    #: once), for forked, launched and pre-started kernels alike (``kernels/silent.py``).
    sys_path: tuple[str, ...] = ()
    #: Ask the kernel, after the last cell, which project modules it imported and which
    #: inputs the flow declared (:func:`ductaflow.core.deps.report`) under this root.
    report_root: Path | None = None
    #: What the executed notebook's ``metadata.papermill.parameters`` records (as papermill's does).
    parameters: Mapping[str, Any] = field(default_factory=dict)
    #: Seeds the kernel's ``random`` and numpy legacy global state before the first cell (core/seeds.py).
    seed: int | None = None
    #: nbclient's cell hooks (``on_cell_start``, ``on_cell_complete``): the cell spans of tracing.
    cell_hooks: Mapping[str, Any] = field(default_factory=dict)


def execute(ex: Execution) -> Outcome:
    """Run the notebook in a fresh kernel and classify whatever happens.

    The kernel's working directory is the instance directory; its ``sys.path`` starts with
    that directory, then ``ex.sys_path`` (the flow's directory, the project root), so a flow
    imports its neighbours and the project's packages as ``python flows/x.py`` does. With
    ``ex.report_root`` the kernel is asked after the last cell what it used
    (:attr:`Outcome.report`; None when it could not say: that never turns a run red).
    """
    _start_kernel_early(ex)
    # papermill, nbclient and the kernel machinery: heavy, so deferred until a flow really runs
    import papermill
    from nbclient.exceptions import CellTimeoutError, DeadKernelError  # deferred with the line above
    from papermill.exceptions import PapermillExecutionError  # deferred with the line above

    # heavy: deferred until a flow really runs
    from ductaflow.kernels.engine import ENGINE_NAME, KernelHandle

    sink = OutputSink(ex.paths["log"])
    handle = KernelHandle(watch_dir=ex.exec_dir, timeout=ex.timeout)
    timer = threading.Timer(ex.timeout, handle.expire) if ex.timeout else None
    facts: dict[str, Any] = {"error": None}
    try:
        with sigterm_raises():
            if timer:
                timer.daemon = True
                timer.start()
            papermill.execute_notebook(
                ex.notebook,
                str(ex.paths["notebook"]),
                engine_name=ENGINE_NAME,
                kernel_name=ex.kernel_name,
                progress_bar=False,
                request_save_on_cell_execute=True,
                execution_timeout=math.ceil(ex.timeout) if ex.timeout else None,  # nbclient wants an int
                resources={"metadata": {"path": str(ex.exec_dir)}},
                sink=sink,
                handle=handle,
                use_current_python=ex.kernel_name is None,
                kernel_env={**os.environ, **ex.env},
                kernel_options=ex.kernel,
                sys_path=list(ex.sys_path),
                report_root=None if ex.report_root is None else str(ex.report_root),
                source_path=str(ex.flow.path),
                recorded_parameters=dict(ex.parameters),
                seed=ex.seed,
                **ex.cell_hooks,
            )
    except PapermillExecutionError as exc:
        facts.update(_raised(ex.notebook, exc))
    except DeadKernelError as exc:
        facts.update(_died(ex, str(exc), handle.phase))
    except (CellTimeoutError, TimeoutError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "timed out"
        facts.update(timed_out=True, error=ErrorInfo("Timeout", first))
    except Terminated:
        facts.update(interrupted=True, terminated=True, error=ErrorInfo("Terminated", "SIGTERM", "", _last_cell(ex)))
    except KeyboardInterrupt:
        facts.update(interrupted=True, error=ErrorInfo("KeyboardInterrupt", "interrupted", "", _last_cell(ex)))
    except Exception as exc:  # the kernel could not start, the engine broke, or the notebook could not be written
        kind = FailureKind.START_FAILED if handle.phase == Phase.START else FailureKind.INFRASTRUCTURE
        facts.update(raised=True, error=ErrorInfo(type(exc).__name__, str(exc), traceback.format_exc()), kind=kind)
    finally:
        if timer:
            timer.cancel()
        peak_rss = handle.peak_rss_mb()
        handle.release()
        sink.close()
    if handle.expired:  # the watchdog's SIGINT surfaces as a KeyboardInterrupt: still a timeout
        limit = f"flow exceeded its timeout of {ex.timeout}s"
        facts = {"timed_out": True, "error": ErrorInfo("Timeout", limit, "", _last_cell(ex))}
    elif handle.stopped and not facts.get("terminated"):  # stopped from another thread (a conductor's Ctrl-C)
        facts = {"interrupted": True, "error": ErrorInfo("KeyboardInterrupt", "interrupted", "", _last_cell(ex))}
    if not any(facts.get(k) for k in ("interrupted", "timed_out", "kernel_died")):
        facts["report"] = handle.report  # None unless the kernel answered after the last cell
    facts["phase"] = handle.phase
    return _outcome(facts, sink.warnings, peak_rss)


def _died(ex: Execution, message: str, phase: str) -> dict[str, Any]:
    """The kernel died: under a cell, or before it could run one (then it never started)."""
    died = ErrorInfo("DeadKernelError", message or "kernel died", "", _last_cell(ex))
    if phase == Phase.START:
        return {"raised": True, "error": died, "kind": FailureKind.START_FAILED}
    return {"kernel_died": True, "error": died}


def _start_kernel_early(ex: Execution) -> None:
    """The first flow of a process: fork its kernel before papermill is imported, so that
    the two overlap (see :func:`ductaflow.kernels.prestart.start_early`)."""
    if ex.kernel_name is not None or not ex.kernel.forks:
        return
    from ductaflow.kernels import prestart  # deferred: imports jupyter_client (heavy)

    prestart.start_early(tuple(ex.kernel.preload), {**os.environ, **ex.env})


def _outcome(facts: dict[str, Any], warnings: list[str], peak_rss: float | None) -> Outcome:
    flags = {k: bool(facts.get(k)) for k in ("interrupted", "timed_out", "kernel_died", "terminated")}
    status = classify(
        raised=bool(facts.get("raised")),
        kernel_died=flags["kernel_died"],
        timed_out=flags["timed_out"],
        interrupted=flags["interrupted"],
        warnings=warnings,
    )
    kind, phase = _failure(facts) if status is Status.RED else (None, None)
    return Outcome(
        status, tuple(warnings), facts.get("error"), peak_rss_mb=peak_rss, report=facts.get("report"),
        kind=kind, phase=phase, **flags,
    )


def _failure(facts: dict[str, Any]) -> tuple[str, str]:
    """Why and when a red execution failed: a cell's error while the cells ran; anything else
    where the kernel handle had got to (a kernel that never answered: ``start``; the notebook
    not written after the last cell: ``finalize``)."""
    error = facts.get("error")
    if facts.get("kind") is not None:  # decided where it was caught (a start failure, ours)
        kind = FailureKind(facts["kind"])
        phase = Phase.START if kind is FailureKind.START_FAILED else Phase(facts.get("phase") or Phase.EXECUTE)
        return kind.value, phase.value
    kind = derive_kind(
        terminated=bool(facts.get("terminated")), interrupted=bool(facts.get("interrupted")),
        timed_out=bool(facts.get("timed_out")), kernel_died=bool(facts.get("kernel_died")),
        error_type=error.type if error else None,
    )  # fmt: skip
    reached = Phase(facts.get("phase") or Phase.EXECUTE)  # a cell's own error: while the cells ran
    return kind.value, (Phase.EXECUTE if kind is FailureKind.USER_ERROR else reached).value


def _raised(nb: Any, exc: Any) -> dict[str, Any]:
    """A cell raised: what, where. ``SystemExit`` with a code other than 0/None is red too."""
    message = _ANSI.sub("", str(exc.evalue))
    if not message and not exc.traceback:  # the error reply came, its details did not
        message = "the kernel reported an error but sent no details (out of memory?)"
    error = ErrorInfo(
        type=exc.ename,
        message=message,
        traceback=_ANSI.sub("", "\n".join(exc.traceback or [])),
        cell_index=_flow_cell_index(nb, exc.cell_index),
    )
    # A KeyboardInterrupt the flow's own code raised is a red flow, not an interrupted run: only
    # a Ctrl-C, SIGTERM or stop delivered to this process (handled above) interrupts the caller.
    return {"raised": True, "error": error}


def _flow_cell_index(nb: Any, executed_index: int | None) -> int | None:
    """Map an index in the executed notebook ``nb`` back to the flow file (skip the injected
    cell, wherever it went; a notebook given no config has none)."""
    if executed_index is None:
        return None
    at = next((i for i, c in enumerate(nb.cells) if INJECTED_TAG in c.get("metadata", {}).get("tags", [])), None)
    return executed_index - 1 if at is not None and executed_index > at else executed_index


def _last_cell(ex: Execution) -> int | None:
    """The flow cell that was running when the kernel went away, read from the saved notebook."""
    # heavy: deferred until a flow really runs
    import nbformat

    try:
        nb = nbformat.read(str(ex.paths["notebook"]), as_version=4)
    except Exception:  # no notebook saved yet
        return None
    last = None
    cells = [c for c in nb.cells if ERROR_MARKER_TAG not in c.get("metadata", {}).get("tags", [])]  # papermill's banner
    for i, cell in enumerate(cells):
        if cell.get("metadata", {}).get("papermill", {}).get("start_time"):
            last = i
    return _flow_cell_index(ex.notebook, last)
