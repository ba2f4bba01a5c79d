"""The conductor's worker side: run one build instance and return what became of it.

It takes a :class:`~ductaflow.conductor.tasks.BuildTask` and gives back a
:class:`~ductaflow.conductor.tasks.BuildOutcome` (:mod:`ductaflow.conductor.tasks`). Whatever
executes :func:`run_build` (a local process, this process, a Dask worker on another machine),
the wrapper stays thin: the build and its flows run in their own
kernels. It never raises and never spawns ``multiprocessing`` children (Dask workers are
daemonic).

A worker that dies mid-build leaves its attempt file behind; when a scheduler such as
Dask re-runs the task elsewhere, the new attempt sees it and, past the allowed retries,
reports the build as lost instead of running it again.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psutil

from ductaflow.conductor.attempts import claim_attempt
from ductaflow.conductor.tasks import WORKER_LOST, BuildOutcome, BuildTask, Failure, failure_fields, lost_outcome
from ductaflow.core import liveness
from ductaflow.core.failures import FailureKind, Phase
from ductaflow.core.lights import Status
from ductaflow.errors import DuctaflowError
from ductaflow.kernels import stopping
from ductaflow.kernels.fork import TEMPLATE_ENV
from ductaflow.run.execute import make_plan, run_plan
from ductaflow.run.notebook_html import render_instance
from ductaflow.run.recorder import close_open_runs
from ductaflow.store.records import InstanceSummary, summarize_instance
from ductaflow.store.result import ErrorInfo, FlowResult

log = logging.getLogger(__name__)

#: How often a worker checks that the conductor that started it is still alive.
_WATCH_INTERVAL_S = 1.0
#: How long an orphaned worker waits for its interrupted builds to record themselves.
_ORPHAN_GRACE_S = 30.0
_WATCH_LOCK = threading.Lock()
_RUNNING: set[str] = set()  # instance dirs of the builds this process is running now
_WATCHING: list[int] = []  # the conductor pid the watchdog of this process follows


def watch_conductor(conductor: Any) -> None:
    """Start (once per process) a thread that stops this worker's builds when its conductor dies.

    Only in a process the conductor started (a local pool worker, a LocalCluster worker): its
    pool outlives a SIGKILLed conductor, and would otherwise finish the builds unwatched, then
    wait forever for tasks, kernels and all. A worker elsewhere (another host) is left alone.
    """
    if not isinstance(conductor, Mapping) or conductor.get("pid") in (None, os.getpid()):
        return
    pid, created = int(conductor["pid"]), float(conductor.get("created") or 0)
    with _WATCH_LOCK:
        if _WATCHING:
            return
        try:
            ancestors = {(p.pid, p.create_time()) for p in psutil.Process().parents()}
        except psutil.Error:
            return
        if (pid, created) not in ancestors:
            return
        _WATCHING.append(pid)
    threading.Thread(target=_watchdog, args=(pid, created), name="ductaflow-conductor-watch", daemon=True).start()


def _watchdog(pid: int, created: float) -> None:
    """Wait for the conductor to die; then interrupt the running builds as Ctrl-C would, and exit."""
    # deferred: the kernel machinery is heavy (~0.1 s to import), needed only once the conductor is gone
    from ductaflow.kernels.engine import stop_kernels

    while liveness.running(pid, created):
        time.sleep(_WATCH_INTERVAL_S)
    with _WATCH_LOCK:
        running = sorted(_RUNNING)
    log.warning("the conductor (pid %d) is gone; stopping %d build(s) and exiting", pid, len(running))
    stop_kernels(running)
    deadline = time.monotonic() + _ORPHAN_GRACE_S
    while time.monotonic() < deadline:
        with _WATCH_LOCK:
            if not _RUNNING:
                break
        time.sleep(0.2)
    os._exit(0)


_BUSY: list[str] = []  # the instance dir of the build this process runs now (at most one)


def mark_busy(instance_dir: str | None) -> None:
    """Around a build: what a SIGTERM to this worker process must stop."""
    _BUSY[:] = [instance_dir] if instance_dir else []


def busy() -> str | None:
    """The instance dir of the build this process runs, if any."""
    return _BUSY[0] if _BUSY else None


def stop_running_build() -> None:
    """From a worker's SIGTERM handler: stop the running build as Ctrl-C would.

    Nothing may raise from here into whatever the main thread was doing (an import, a file
    write), and nothing is imported here: the engine is used only if this build loaded it.
    A kernel that is not up yet is stopped when it starts (:mod:`ductaflow.kernels.stopping`).
    """
    target = busy()
    if target is None:
        return
    try:
        stopping.request([target])
        engine = sys.modules.get("ductaflow.kernels.engine")  # read only: never import in a handler
        if engine is not None:
            engine.stop_kernels([target])
    except Exception:  # noqa: BLE001 - a signal handler must not raise
        pass


def close_earlier_attempt(task: BuildTask, attempt: int) -> int:
    """Before attempt ``attempt`` of a task: the runs the dead earlier attempt left open are
    closed red and logged (every attempt has its ledger row); returns how many."""
    detail = f"{WORKER_LOST}: the worker running attempt {attempt - 1} died"
    if attempt <= 1 + task.lost_retries:
        detail += f"; re-run as attempt {attempt}"
    error = ErrorInfo("WorkerLost", detail)
    return close_open_runs(task.instance_dir, task.build_path.stem, task.context, error)


def run_build(task: BuildTask) -> BuildOutcome:
    """Run one build instance described by ``task``; always return an outcome, never raise."""
    watch_conductor(task.conductor)
    if task.attempt_file is not None:
        attempt = claim_attempt(task.attempt_file)
        if attempt > 1:  # the earlier attempt's worker died: its open runs end (and are logged) here
            close_earlier_attempt(task, attempt)
        if attempt > 1 + task.lost_retries:
            return lost_outcome(task.instance, f"the worker running it died ({attempt - 1} attempt(s))")
    exec_dir = str(task.instance_dir)
    stopping.forget(exec_dir)  # a stop meant for an earlier build of this dir
    if task.kernel_template:  # the conductor's warm kernel template (local workers)
        os.environ[TEMPLATE_ENV] = task.kernel_template
    mark_busy(exec_dir)
    with _WATCH_LOCK:
        _RUNNING.add(exec_dir)
    t0 = time.monotonic()
    try:
        ran = _execute(task)
    finally:
        mark_busy(None)
    summary = summarize_instance(task.instance_dir, task.build_path.stem)
    if not ran.interrupted:
        _render_pages(task, summary)
    with _WATCH_LOCK:  # after the record is read back: an orphaned worker exits once this is empty
        _RUNNING.discard(exec_dir)
    build = summary.build
    kind, phase, error_type = _failure(build, ran)
    return BuildOutcome(
        instance=task.instance,
        status=Status.RED if ran.error else (summary.status or Status.RED),
        duration=build.duration if build and build.duration else time.monotonic() - t0,
        error=ran.error or summary.error or ("interrupted" if ran.interrupted else None),
        worst_flow=summary.worst_flow,
        interrupted=ran.interrupted,
        skipped=ran.skipped,
        notes=ran.notes,
        worker=f"{socket.gethostname()}:{os.getpid()}",
        started=build.started if build else None,
        kind=kind,
        phase=phase,
        error_type=error_type,
    )


def _failure(build: FlowResult | None, ran: _Ran) -> Failure:
    """A build's failure kind: its record's, unless the worker could not run it (a refusal, a
    DuctaflowError, is the caller's to fix; anything else failed to start)."""
    if ran.interrupted:
        return FailureKind.INTERRUPTED.value, None, "KeyboardInterrupt"
    if ran.error is not None:
        kind, phase = (FailureKind.START_FAILED, Phase.START)
        if ran.refused:
            kind, phase = FailureKind.USER_ERROR, Phase.PREPARE
        return kind.value, phase.value, ran.error_type
    return failure_fields(build)


def _render_pages(task: BuildTask, summary: InstanceSummary) -> None:
    """The pages of the build's notebooks that ``task.html`` asks for, once its records are final
    (``summary``: rendering never changes them); a failure is logged, the build's light stands."""
    try:
        pages = render_instance(task.instance_dir, task.build_path.stem, task.html, summary=summary)
    except Exception as exc:  # noqa: BLE001 - a worker must report, not die
        log.warning("could not render the notebooks of %s as HTML: %s", task.instance_dir, exc)
        return
    if pages:
        log.info("rendered %d notebook page(s) in %s", len(pages), task.instance_dir)


@dataclass(frozen=True)
class _Ran:
    """How running a build went, seen from the worker: ``error`` when it could not be run at all."""

    skipped: bool = False
    notes: tuple[str, ...] = ()
    interrupted: bool = False
    error: str | None = None
    error_type: str | None = None
    refused: bool = False  # the error is a DuctaflowError: bad input, the caller's to fix


def _execute(task: BuildTask) -> _Ran:
    """Run the build under the conductor's decision."""
    try:
        plan = make_plan(
            task.build_path,
            dict(task.config),
            task.instance_dir,
            task.project_root,
            instance_name=task.instance,
            timeout=task.timeout,
            force=task.force,
            context=task.context,
            preload=task.preload,
        )
        # the conductor's decision; run_plan checks it under the instance lock
        result = run_plan(plan, decision=task.decision)  # a red build is a result, not a raise
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (Terminated), that run_plan passed on
        return _Ran(interrupted=True)
    except DuctaflowError as exc:
        return _Ran(error=str(exc), error_type=type(exc).__name__, refused=True)
    except Exception as exc:  # noqa: BLE001 - a worker must report, not die
        return _Ran(error=f"{type(exc).__name__}: {exc}", error_type=type(exc).__name__)
    return _Ran(result.skipped, result.notes, result.interrupted or result.terminated)
