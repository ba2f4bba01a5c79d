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

import heapq
import itertools
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import replace
from pathlib import Path
from typing import Any

from ductaflow.conductor.attempts import read_attempt
from ductaflow.conductor.executors import Backend
from ductaflow.conductor.executors.base import Health
from ductaflow.conductor.lost import close_lost, recover
from ductaflow.conductor.progress import Reporter
from ductaflow.conductor.scenario import ScenarioPlan
from ductaflow.conductor.state import ConductorRun
from ductaflow.conductor.tasks import NOT_RUN, SHARED_FILESYSTEM, BuildOutcome, BuildTask, lost_outcome
from ductaflow.conductor.worker import run_build
from ductaflow.core.failures import FailureKind, Phase, RetryPolicy
from ductaflow.core.lights import Status
from ductaflow.lifecycle.events import EventKind, ScenarioEvent
from ductaflow.run.signals import sigterm_raises
from ductaflow.store.layout import artifact_path
from ductaflow.store.ledger import ingest_spool
from ductaflow.store.records import read_status
from ductaflow.store.result import RunState
from ductaflow.store.sweeps import BUDGET

#: How long running builds get to stop and record themselves after a Ctrl-C.
_INTERRUPT_GRACE_S = 30.0
#: While no worker is connected, how often the conductor says it is still waiting.
_WAITING_NOTE_EVERY_S = 60.0


def schedule(
    run: ConductorRun,
    backend: Backend,
    tasks: Sequence[BuildTask],
    *,
    fail_fast: bool,
    reporter: Reporter,
    retry: RetryPolicy | None = None,
    make_task: Callable[[ScenarioPlan], BuildTask] | None = None,
) -> bool:
    """Run ``tasks`` on ``backend``, recording each outcome in ``run``; a red build whose failure
    ``retry`` covers runs again after its backoff, and the follow-ups the sweep's search
    proposes run as ``make_task`` makes them.

    Returns True when the run was interrupted (Ctrl-C, or SIGTERM in the main thread)
    after an orderly stop; the caller then saves the final state and re-raises.
    """
    scheduler = _Scheduler(run, backend, reporter, fail_fast, retry or RetryPolicy(), make_task)
    run.events.add("progress", scheduler.show)
    try:
        with sigterm_raises():
            scheduler.loop(tasks)
    except KeyboardInterrupt:
        return True
    return False


class _Scheduler:
    """The state of one scheduling loop: what waits, what runs, and whether to stop."""

    def __init__(
        self, run: ConductorRun, backend: Backend, reporter: Reporter, fail_fast: bool, retry: RetryPolicy,
        make_task: Callable[[ScenarioPlan], BuildTask] | None,
    ) -> None:  # fmt: skip
        self.run = run
        self.backend = backend
        self.reporter = reporter
        self.fail_fast = fail_fast
        self.retry = retry
        self.make_task = make_task
        self.queue: list[tuple[tuple[bool, float, int], int, BuildTask]] = []  # a heap: by priority, then order
        self.delayed: list[tuple[float, int, BuildTask, BuildOutcome]] = []  # retries waiting out their backoff
        self.pushed = itertools.count()
        self.running: dict[Future[Any], BuildTask] = {}
        self.stopping = False  # fail-fast, or the cluster given up: launch nothing more
        self.interrupting = False  # a worker that goes during a Ctrl-C was stopped, not lost
        self.waiting_since: float | None = None  # since when the cluster has had no worker
        self.last_note = 0.0
        self.cluster_gone = False

    def push(self, task: BuildTask) -> None:
        """Queue ``task`` by its scenario's priority, then submission order."""
        search = self.run.search
        key = search.order(task.instance) if search else (True, 0.0, 0)
        heapq.heappush(self.queue, (key, next(self.pushed), task))

    def loop(self, tasks: Sequence[BuildTask]) -> None:
        """Keep the backend's slots busy until every task is recorded; on Ctrl-C stop, then re-raise."""
        for task in tasks:
            self.push(task)
        wake = self.backend.wake_every
        try:
            self._expand_up_to_date()
            while self.queue or self.running or self.delayed:
                self._release_due()
                self._launch()
                if not self.running and not self.delayed and (wake is None or not self.queue):
                    break
                timeout = self._timeout(wake)
                if self.running:
                    done, _ = wait(self.running, timeout=timeout, return_when=FIRST_COMPLETED)
                else:  # work waits, no slot (the cluster has no worker yet), or a retry waits out its backoff
                    done = set()
                    time.sleep(timeout or 0)
                for fut in done:
                    self._finished(fut)
                if wake is not None:
                    self._watch_cluster()
        except KeyboardInterrupt:
            self._interrupt()
            raise

    def _timeout(self, wake: float | None) -> float | None:
        """How long to wait for a build to end: until the next wake-up or the next retry is due."""
        if not self.delayed:
            return wake
        due = max(0.0, self.delayed[0][0] - time.monotonic())
        return due if wake is None else min(wake, due)

    def _release_due(self) -> None:
        """Retries whose backoff is over join the queue."""
        now = time.monotonic()
        while self.delayed and self.delayed[0][0] <= now:
            self.push(heapq.heappop(self.delayed)[2])

    def _launch(self) -> None:
        if self.stopping or not self.queue:
            return
        free = self.backend.slots() - len(self.running)
        while self.queue and free > 0:
            task = heapq.heappop(self.queue)[2]
            if task.attempt == 1 and self.run.search and not self.run.search.may_start(task.instance):
                self._out_of_budget(task)
                return
            self.run.start(task.instance)
            if task.attempt == 1:
                parent = self.run.spans.start_scenario(task.instance, self.run.plan.name, self.run.sweep)
                if parent is not None:  # the build's flow span goes under its scenario's, in the worker
                    task = replace(task, context=task.context.child(trace_parent=parent))
            self.run.emit(EventKind.STARTED, task.instance)
            self.running[self.backend.submit(run_build, task)] = task
            free -= 1

    def _out_of_budget(self, first: BuildTask) -> None:
        """``max_runs`` builds have started: the scenarios still queued are not run (``not_run: budget``)."""
        rest = [first, *(item[2] for item in self.queue)]
        self.queue.clear()
        self.reporter.message(f"max_runs reached: {len(rest)} queued scenario(s) not run")
        self.run.cancel((t.instance for t in rest), reason=f"{NOT_RUN}: {BUDGET}")

    def _finished(self, fut: Future[Any]) -> None:
        row = self._record(fut)
        if row is None:
            return
        hook_stop = self.run.hooks.stops and bool(row.get("hook_failures"))
        if row["status"] == "red" and (self.fail_fast or hook_stop) and not self.stopping:
            self.stopping = True
            self.run.state = "stopped"
            why = "a hook raised on it (hooks_fail='stop')" if hook_stop else "fail-fast"
            self.reporter.message(f"{why}: {row['instance']} is red; not starting {len(self.queue)} more")
            self._stop_queue()

    def _stop_queue(self, reason: str | None = None) -> None:
        """Launch nothing more: queued scenarios are cancelled, waiting retries end with their last outcome."""
        self.stopping = True
        for item in sorted(self.delayed):
            self._end(item[2], item[3])
        self.delayed.clear()
        if self.queue:
            self.run.cancel((item[2].instance for item in sorted(self.queue)), reason=reason)
            self.queue.clear()

    def _record(self, fut: Future[Any]) -> dict[str, Any] | None:
        """Record a finished future's build in its row; returns the row (None: it will be retried)."""
        task = self.running.pop(fut)
        return self._settle(task, outcome_of(fut, task.instance))

    def _settle(self, task: BuildTask, outcome: BuildOutcome) -> dict[str, Any] | None:
        """Record a build's outcome (a lost one judged from its files first); returns its row, or
        None when the failure earns another attempt (queued after its backoff)."""
        if outcome.lost and self.interrupting:
            outcome = close_lost(task, outcome, interrupted=True)
        elif outcome.lost:
            gone = self.cluster_gone or self.backend.health() is Health.LOST
            outcome = recover(task, outcome, cluster_gone=gone)
        if not outcome.lost and not outcome.not_run:
            outcome = confirmed(task, outcome)
        _ingest(task)
        if self._retries(task, outcome):
            return None
        row = self._end(task, outcome)
        self._expand(task.instance)
        return row

    def _retries(self, task: BuildTask, outcome: BuildOutcome) -> bool:
        """Whether a red build runs again (its failure is one the retry policy covers): it is then
        queued after its backoff, as the next attempt, and its row stays running."""
        if outcome.status is not Status.RED or outcome.interrupted or outcome.not_run:
            return False
        if self.stopping or self.interrupting:
            return False
        if not self.retry.should_retry(task.attempt, outcome.kind, outcome.error_type):
            return False
        delay = self.retry.delay(task.attempt)
        self.reporter.message(f"{task.instance}: attempt {task.attempt} is red ({outcome.kind}: {outcome.error}); "
                              f"retrying in {delay:.1f} s")  # fmt: skip
        self.run.retrying(outcome)
        n = task.attempt + 1
        attempt_file = task.attempt_file.with_name(f"{task.instance}.{n}.json") if task.attempt_file else None
        again = replace(task, attempt=n, context=task.context.child(attempt=n), attempt_file=attempt_file)
        heapq.heappush(self.delayed, (time.monotonic() + delay, next(self.pushed), again, outcome))
        return True

    def _expand(self, instance: str) -> None:
        """The follow-ups the scenario's result proposes join the queue; a follow-up that failed stops the sweep."""
        search = self.run.search
        if search is None or search.follow_up is None or self.make_task is None:
            return
        due = search.expand(instance)
        for p in due:
            self.push(self.make_task(p))
        grow = getattr(self.reporter, "grow", None)  # optional: a caller's own reporter may not count
        if due and callable(grow):
            grow(len(due))
        if search.failure is not None and not self.stopping:
            self.reporter.message(f"{search.failure}; not starting {len(self.queue)} more")
            self._stop_queue(f"{NOT_RUN}: the follow-up failed")

    def _expand_up_to_date(self) -> None:
        """Before the first launch: the follow-ups of scenarios that were up to date (or done, resumed)."""
        search = self.run.search
        if search is not None and search.follow_up is not None:
            for p in list(self.run.plan.scenarios):
                if self.run.rows[p.instance]["state"] == "skipped":
                    self._expand(p.instance)

    def _end(self, task: BuildTask, outcome: BuildOutcome) -> dict[str, Any]:
        """The build's last outcome in its row, its span ended, its event sent; returns the row."""
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
        self._stop_queue(f"{NOT_RUN}: {reason}")

    def show(self, event: ScenarioEvent) -> None:
        """Consumer: a build that ended, on the progress display."""
        if event.kind not in (EventKind.STARTED, EventKind.CANCELLED) or self.interrupting:
            self.reporter.finished(dict(event.row), self.run.counts())

    def _interrupt(self) -> None:
        """Launch nothing more; stop the running builds, record those that stop in time."""
        self.reporter.message("interrupted: stopping running builds and reaping their kernels ...")
        self.interrupting = True
        for item in sorted(self.delayed):  # red, and not to be retried now
            self._end(item[2], item[3])
        self.delayed.clear()
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
    return replace(outcome, status=Status.RED, error=error, skipped=False, kind=FailureKind.INFRASTRUCTURE.value,
                   phase=Phase.FINALIZE.value)  # fmt: skip


def _ingest(task: BuildTask) -> None:
    """The ledger records the build parked in its spool go into the ledger."""
    if task.context.runs_root and task.context.ledger_spool:
        ingest_spool(task.context.runs_root, Path(task.context.ledger_spool))
