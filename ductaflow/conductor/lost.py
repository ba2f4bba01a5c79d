"""Builds the conductor lost touch with: what their records say, closed and logged.

A build's outcome normally comes back from its worker. When it does not (the worker died,
the Dask scheduler went away, Ctrl-C stopped it), the conductor decides from the files the
build left: its attempt file (did it start, when) and its status records (did it finish).
A build that finished keeps its light; one that was still running is closed red, each of
its unfinished records (the build's and its flows') with a ledger row of its own; one that
never started was not run. A worker that re-runs a lost task closes the earlier attempt
the same way before it starts again, so every attempt is in the ledger.
"""

from __future__ import annotations

from dataclasses import replace

from ductaflow.conductor.attempts import Attempt, read_attempt
from ductaflow.conductor.tasks import NOT_RUN, WORKER_LOST, BuildOutcome, BuildTask, failure_fields
from ductaflow.core.failures import FailureKind
from ductaflow.core.lights import Status
from ductaflow.run.recorder import close_open_runs
from ductaflow.store.records import summarize_instance
from ductaflow.store.result import ErrorInfo, RunState


def recover(task: BuildTask, outcome: BuildOutcome, *, cluster_gone: bool) -> BuildOutcome:
    """The outcome of a build whose worker never reported, from its files.

    ``cluster_gone``: the whole cluster (the Dask scheduler) was lost, so a build that never
    started is ``not_run`` rather than a lost worker's.
    """
    attempt = read_attempt(task.attempt_file)
    if attempt is None:
        if cluster_gone:
            return replace(outcome, error=f"{NOT_RUN}: {_detail(outcome)}", lost=False, not_run=True)
        return close_lost(task, outcome, interrupted=False)
    summary = summarize_instance(task.instance_dir, task.build_path.stem)
    build = summary.build
    if build is not None and build.state == RunState.FINISHED and _this_attempts(build.started, attempt):
        note = "its worker's answer was lost; its result is taken from its records"
        kind, phase, error_type = failure_fields(build)
        return BuildOutcome(
            instance=task.instance,
            status=summary.status or Status.RED,
            duration=build.duration,
            error=summary.error,
            worst_flow=summary.worst_flow,
            notes=(note,),
            worker=f"{attempt.host}:{attempt.pid}" if attempt.host else None,
            started=build.started,
            kind=kind,
            phase=phase,
            error_type=error_type,
        )
    return close_lost(task, outcome, interrupted=False)


def close_lost(task: BuildTask, outcome: BuildOutcome, *, interrupted: bool) -> BuildOutcome:
    """A lost build's records say red (not ``running`` forever), and the ``lost`` event of each
    run it left open reaches that run's consumers (the ledger), as its worker would have sent
    its end. During a Ctrl-C a worker that goes was stopped: its build is ``interrupted``.
    Returns the outcome completed from the records.
    """
    if interrupted:
        outcome = replace(outcome, error="interrupted", kind=FailureKind.INTERRUPTED.value)
        error = ErrorInfo("KeyboardInterrupt", "interrupted")
    else:
        error = ErrorInfo("WorkerLost", outcome.error or WORKER_LOST)
    close_open_runs(task.instance_dir, task.build_path.stem, task.context, error, interrupted=interrupted)
    summary = summarize_instance(task.instance_dir, task.build_path.stem)
    duration = summary.build.duration if summary.build else None
    return replace(outcome, worst_flow=summary.worst_flow, duration=outcome.duration or duration)


def _this_attempts(started: str | None, attempt: Attempt) -> bool:
    """Whether a record that started at ``started`` belongs to ``attempt`` (not an earlier run)."""
    if attempt.started is None or started is None:
        return False
    return started >= attempt.started  # both UTC ISO from the worker's clock: text order is time order


def _detail(outcome: BuildOutcome) -> str:
    text = outcome.error or ""
    return text.split(": ", 1)[1] if text.startswith(f"{WORKER_LOST}: ") else text or "never started"
