"""The conductor's one scheduling loop over the futures of a
:class:`~ductaflow.conductor.executors.Backend` (``wait(FIRST_COMPLETED)``, never polling).

It keeps ``backend.slots()`` builds in flight and records each as it finishes; fail-fast
launches nothing more after the first red build. On Ctrl-C (or SIGTERM) it launches
nothing more, asks the running builds to stop (their kernels are interrupted and reaped,
their records say ``interrupted``), and records what they report. A build whose worker
never answered is judged from its files (:mod:`ductaflow.conductor.lost`): finished, it
keeps its light; still running, it is red ``worker_lost``, its records closed and logged.

On a cluster (``backend.wake_every``) the loop also wakes up every few seconds: slots follow
the cluster's workers as they come and go; with no worker for ``backend.worker_wait``
seconds, or the scheduler lost for good, the scenarios not yet run are given up as
``not_run`` and the loop ends.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import replace
from pathlib import Path
from typing import Any

from ductaflow.conductor.attempts import read_attempt
from ductaflow.conductor.executors import Backend
from ductaflow.conductor.executors.base import Health
from ductaflow.conductor.lost import close_lost, recover
from ductaflow.conductor.progress import Reporter
from ductaflow.conductor.state import ConductorRun
from ductaflow.conductor.tasks import NOT_RUN, SHARED_FILESYSTEM, BuildOutcome, BuildTask, lost_outcome
from ductaflow.conductor.worker import run_build
from ductaflow.core.lights import Status
from ductaflow.lifecycle.events import EventKind, ScenarioEvent
from ductaflow.run.signals import sigterm_raises
from ductaflow.store.layout import artifact_path
from ductaflow.store.ledger import ingest_spool
from ductaflow.store.records import read_status
from ductaflow.store.result import RunState

#: How long running builds get to stop and record themselves after a Ctrl-C.
_INTERRUPT_GRACE_S = 30.0
#: While no worker is connected, how often the conductor says it is still waiting.
_WAITING_NOTE_EVERY_S = 60.0


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
        self.stopping = False  # fail-fast, or the cluster given up: launch nothing more
        self.interrupting = False  # a worker that goes during a Ctrl-C was stopped, not lost
        self.waiting_since: float | None = None  # since when the cluster has had no worker
        self.last_note = 0.0
        self.cluster_gone = False

    def loop(self, tasks: Sequence[BuildTask]) -> None:
        """Keep the backend's slots busy until every task is recorded; on Ctrl-C stop, then re-raise."""
        self.queue.extend(tasks)
        wake = self.backend.wake_every
        try:
            while self.queue or self.running:
                self._launch()
                if not self.running and (wake is None or not self.queue):
                    break
                if self.running:
                    done, _ = wait(self.running, timeout=wake, return_when=FIRST_COMPLETED)
                else:  # work waits, no slot: the cluster has no worker (yet)
                    done = set()
                    time.sleep(wake or 0)
                for fut in done:
                    self._finished(fut)
                if wake is not None:
                    self._watch_cluster()
        except KeyboardInterrupt:
            self._interrupt()
            raise

    def _launch(self) -> None:
        if self.stopping or not self.queue:
            return
        free = self.backend.slots() - len(self.running)
        while self.queue and free > 0:
            task = self.queue.popleft()
            self.run.start(task.instance)
            parent = self.run.spans.start_scenario(task.instance, self.run.plan.name, self.run.sweep)
            if parent is not None:  # the build's flow span goes under its scenario's, in the worker
                task = replace(task, context=task.context.child(trace_parent=parent))
            self.run.emit(EventKind.STARTED, task.instance)
            self.running[self.backend.submit(run_build, task)] = task
            free -= 1

    def _finished(self, fut: Future[Any]) -> None:
        row = self._record(fut)
        hook_stop = self.run.hooks.stops and bool(row.get("hook_failures"))
        if row["status"] == "red" and (self.fail_fast or hook_stop) and not self.stopping:
            self.stopping = True
            self.run.state = "stopped"
            why = "a hook raised on it (hooks_fail='stop')" if hook_stop else "fail-fast"
            self.reporter.message(f"{why}: {row['instance']} is red; not starting {len(self.queue)} more")
            self.run.cancel(t.instance for t in self.queue)
            self.queue.clear()

    def _record(self, fut: Future[Any]) -> dict[str, Any]:
        """Record a finished future's build in its row; returns the row."""
        task = self.running.pop(fut)
        return self._settle(task, outcome_of(fut, task.instance))

    def _settle(self, task: BuildTask, outcome: BuildOutcome) -> dict[str, Any]:
        """Record a build's outcome (a lost one judged from its files first); returns its row."""
        if outcome.lost and self.interrupting:
            outcome = close_lost(task, outcome, interrupted=True)
        elif outcome.lost:
            gone = self.cluster_gone or self.backend.health() is Health.LOST
            outcome = recover(task, outcome, cluster_gone=gone)
        if not outcome.lost and not outcome.not_run:
            outcome = confirmed(task, outcome)
        _ingest(task)
        row = self.run.finish(outcome)
        if self.run.spans.scenarios:
            attempt = read_attempt(task.attempt_file)
            self.run.spans.end_scenario(row, attempt.count if attempt else None)
        for note in outcome.notes:
            self.reporter.message(f"{task.instance}: {note}")
        self.run.emit(ending(outcome), task.instance)
        return row

    def _watch_cluster(self) -> None:
        """On a wake-up: say while no worker is connected; give up after the wait, or the scheduler."""
        health = self.backend.health()
        now = time.monotonic()
        if health is Health.OK:
            if self.waiting_since is not None:
                self.reporter.message("a worker joined; carrying on")
            self.waiting_since = None
        elif health is Health.LOST:
            self._give_up("the cluster's scheduler was lost (and did not come back)")
        elif health is Health.RECONNECTING:
            if now - self.last_note >= _WAITING_NOTE_EVERY_S:
                self.reporter.message("lost the connection to the cluster's scheduler; reconnecting ...")
                self.last_note = now
        elif self.waiting_since is None:
            self.waiting_since = self.last_note = now
            limit = self.backend.worker_wait
            self.reporter.message(f"{self.backend.why_idle()}; waiting up to {limit:.0f} s for one (worker_wait) ...")
        elif now - self.waiting_since >= self.backend.worker_wait:
            self._give_up(f"{self.backend.why_idle()} for {self.backend.worker_wait:.0f} s (worker_wait)")
        elif now - self.last_note >= _WAITING_NOTE_EVERY_S:
            self.reporter.message(f"still {self.backend.why_idle()} after {now - self.waiting_since:.0f} s ...")
            self.last_note = now

    def _give_up(self, reason: str) -> None:
        """The cluster cannot run the rest: builds in flight judged from their files (finished
        ones keep their light, started ones are lost, the rest not run), queued ones ``not_run``."""
        self.cluster_gone = self.stopping = True
        self.reporter.message(f"giving up: {reason}; {len(self.queue) + len(self.running)} scenario(s) unfinished")
        for fut, task in list(self.running.items()):
            del self.running[fut]
            fut.cancel()
            self._settle(task, lost_outcome(task.instance, reason))
        if self.queue:
            self.run.cancel((t.instance for t in self.queue), reason=f"{NOT_RUN}: {reason}")
            self.queue.clear()

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
            if read_attempt(task.attempt_file) is None:  # still queued on the cluster: never began
                self.run.unstart(task.instance)
        self.run.interrupt()


def ending(outcome: BuildOutcome) -> EventKind:
    """The scenario event a build's outcome stands for."""
    if outcome.lost:
        return EventKind.LOST
    if outcome.not_run:
        return EventKind.CANCELLED
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


def _ingest(task: BuildTask) -> None:
    """The ledger records the build parked in its spool go into the ledger."""
    if task.context.runs_root and task.context.ledger_spool:
        ingest_spool(task.context.runs_root, Path(task.context.ledger_spool))
