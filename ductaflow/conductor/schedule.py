"""The conductor's one scheduling loop over the futures of a
:class:`~ductaflow.conductor.executors.Backend` (``wait(FIRST_COMPLETED)``, never polling).

It keeps ``backend.workers`` builds in flight and records each as it finishes; fail-fast
launches nothing more after the first red build. On Ctrl-C (or SIGTERM) it launches
nothing more, asks the running builds to stop (their kernels are interrupted and reaped,
their records say ``interrupted``), and records what they report. A build whose worker
died is red ``worker_lost``: its records are closed and its run logged here, since no one
else will.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import replace
from pathlib import Path
from typing import Any

from ductaflow.conductor.executors import Backend
from ductaflow.conductor.progress import Reporter
from ductaflow.conductor.state import ConductorRun
from ductaflow.conductor.worker import SHARED_FILESYSTEM, BuildOutcome, BuildTask, lost_outcome, run_build
from ductaflow.core.lights import Status
from ductaflow.lifecycle.events import EventKind, ScenarioEvent
from ductaflow.run.recorder import Lifecycle
from ductaflow.run.signals import sigterm_raises
from ductaflow.store.layout import artifact_path
from ductaflow.store.ledger import ingest_spool
from ductaflow.store.records import close_unfinished, read_status, status_files, summarize_instance
from ductaflow.store.result import ErrorInfo, RunState

#: How long running builds get to stop and record themselves after a Ctrl-C.
_INTERRUPT_GRACE_S = 30.0


def schedule(
    run: ConductorRun, backend: Backend, tasks: Sequence[BuildTask], *, fail_fast: bool, reporter: Reporter
) -> bool:
    """Run ``tasks`` on ``backend``, recording each outcome in ``run``.

    Returns True when the run was interrupted (Ctrl-C, or SIGTERM in the main thread)
    after an orderly stop; the caller then saves the final state and re-raises.
    """
    scheduler = _Scheduler(run, backend, reporter, fail_fast)
    run.events.add("progress", scheduler.show)
    try:
        with sigterm_raises():
            scheduler.loop(tasks)
    except KeyboardInterrupt:
        return True
    return False


class _Scheduler:
    """The state of one scheduling loop: what waits, what runs, and whether to stop."""

    def __init__(self, run: ConductorRun, backend: Backend, reporter: Reporter, fail_fast: bool) -> None:
        self.run = run
        self.backend = backend
        self.reporter = reporter
        self.fail_fast = fail_fast
        self.queue: deque[BuildTask] = deque()
        self.running: dict[Future[Any], BuildTask] = {}
        self.stopping = False  # fail-fast: launch nothing more
        self.interrupting = False  # a worker that goes during a Ctrl-C was stopped, not lost

    def loop(self, tasks: Sequence[BuildTask]) -> None:
        """Keep the backend's slots busy until every task is recorded; on Ctrl-C stop, then re-raise."""
        self.queue.extend(tasks)
        try:
            while self.queue or self.running:
                self._launch()
                if not self.running:
                    break
                done, _ = wait(self.running, return_when=FIRST_COMPLETED)
                for fut in done:
                    self._finished(fut)
        except KeyboardInterrupt:
            self._interrupt()
            raise

    def _launch(self) -> None:
        while self.queue and len(self.running) < self.backend.workers and not self.stopping:
            task = self.queue.popleft()
            self.run.start(task.instance)
            self.run.emit(EventKind.STARTED, task.instance)
            self.running[self.backend.submit(run_build, task)] = task

    def _finished(self, fut: Future[Any]) -> None:
        row = self._record(fut)
        if row["status"] == "red" and self.fail_fast and not self.stopping:
            self.stopping = True
            self.run.state = "stopped"
            self.reporter.message(f"fail-fast: {row['instance']} is red; not starting {len(self.queue)} more")
            self.run.cancel(t.instance for t in self.queue)
            self.queue.clear()

    def _record(self, fut: Future[Any]) -> dict[str, Any]:
        """Record a finished build in its row (closing a lost one's records first); returns the row."""
        task = self.running.pop(fut)
        outcome = outcome_of(fut, task.instance)
        lost = outcome.lost
        outcome = close_lost(task, outcome, interrupted=self.interrupting) if lost else confirmed(task, outcome)
        _ingest(task)
        row = self.run.finish(outcome)
        for note in outcome.notes:
            self.reporter.message(f"{task.instance}: {note}")
        self.run.emit(ending(outcome), task.instance)
        return row

    def show(self, event: ScenarioEvent) -> None:
        """Consumer: a build that ended, on the progress display."""
        if event.kind not in (EventKind.STARTED, EventKind.CANCELLED) or self.interrupting:
            self.reporter.finished(dict(event.row), self.run.counts())

    def _interrupt(self) -> None:
        """Launch nothing more; stop the running builds, record those that stop in time."""
        self.reporter.message("interrupted: stopping running builds and reaping their kernels ...")
        self.interrupting = True
        self.backend.stop([str(t.instance_dir) for t in self.running.values()])
        done, _ = wait(list(self.running), timeout=_INTERRUPT_GRACE_S)
        for fut in done:
            self._record(fut)
        for task in self.running.values():
            _ingest(task)
        self.run.interrupt()


def ending(outcome: BuildOutcome) -> EventKind:
    """The scenario event a build's outcome stands for."""
    if outcome.lost:
        return EventKind.LOST
    if outcome.skipped:
        return EventKind.SKIPPED
    if outcome.interrupted:
        return EventKind.CANCELLED
    return EventKind.FAILED if outcome.status is Status.RED else EventKind.FINISHED


def outcome_of(fut: Future[Any], instance: str) -> BuildOutcome:
    """A finished future's outcome; a future that failed means the worker was lost."""
    try:
        outcome: BuildOutcome = fut.result()
    except Exception as exc:  # noqa: BLE001 - BrokenProcessPool, Dask's KilledWorker, a lost connection
        return lost_outcome(instance, f"{type(exc).__name__}: {exc}".rstrip(": "))
    return outcome


def confirmed(task: BuildTask, outcome: BuildOutcome) -> BuildOutcome:
    """A build counts as green or orange only when its final record is on this process's disk.

    A worker that does not see the runs root (a node that joined after the start-up check,
    another mount) writes the build's files to its own disk: its outcome says green, but the
    folder, metrics and ledger rows exist only there, and the record here (if any) is an
    older run's. Such a build is red ``shared_filesystem``, naming the worker and the record
    it did not find (the one that started when the worker says); never green.
    """
    if outcome.status is Status.RED:
        return outcome  # red already, with the worker's own reason
    path = artifact_path(task.instance_dir, task.build_path.stem, "status")
    rec = read_status(path)
    if rec is not None and rec.state == RunState.FINISHED and rec.started == outcome.started:
        return outcome
    seen = "missing" if rec is None else f"{rec.state}, {rec.status.value}, started {rec.started}"
    where = f"worker {outcome.worker}" if outcome.worker else "its worker"
    error = (
        f"{SHARED_FILESYSTEM}: {where} reported {outcome.status.value}, but the build's status record "
        f"{path} is {seen} on this machine: that worker does not share the runs root {path.parents[2]}"
    )
    return replace(outcome, status=Status.RED, error=error, skipped=False)


def close_lost(task: BuildTask, outcome: BuildOutcome, *, interrupted: bool) -> BuildOutcome:
    """A lost build's records say red (not ``running`` forever), and its run's ``lost`` event
    reaches the run's consumers (the ledger) as the worker would have sent its end.

    During a Ctrl-C a worker that goes was stopped: its build is ``interrupted``.
    Returns the outcome completed from the records.
    """
    if interrupted:
        outcome = replace(outcome, error="interrupted")
        error = ErrorInfo("KeyboardInterrupt", "interrupted")
    else:
        error = ErrorInfo("WorkerLost", outcome.error or "")
    build = task.build_path.stem
    for path in [artifact_path(task.instance_dir, build, "status"), *status_files(task.instance_dir)]:
        close_unfinished(path, error, interrupted=interrupted)
    summary = summarize_instance(task.instance_dir, build)
    if summary.build is not None:  # the run's own lifecycle ends here: its consumers (the ledger) hear of it
        Lifecycle(task.context).lost(summary.build)
    return replace(outcome, worst_flow=summary.worst_flow)


def _ingest(task: BuildTask) -> None:
    """The ledger records the build parked in its spool go into the ledger."""
    if task.context.runs_root and task.context.ledger_spool:
        ingest_spool(task.context.runs_root, Path(task.context.ledger_spool))
