"""The conductor's bookkeeping for one conduct() call: a row per scenario, the state file
and the pace of the live report.

The conductor process alone writes these files. The state file
(``<runs root>/.ductaflow/conductor/<build>.json`` and its journal, written and read only
through :mod:`ductaflow.store.sweep_state`) is what the report reads; each of its rows is a
JSON object made by :func:`state_row` and updated here as builds start and end. A start or
end costs one journal line, the light counts are kept as rows change, and the live report
is rewritten on a time budget: nothing done per build grows with the table.

Each change to a scenario is also a :class:`~ductaflow.lifecycle.events.ScenarioEvent`
handed to :attr:`ConductorRun.events`: the state file (and with it the live report) is its
first, required consumer; the progress display is added by the scheduler; hooks and
trackers are added the same way.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ductaflow.conductor.attempts import OWNER_FILE, remove_stale_attempts
from ductaflow.conductor.hooks import SweepHooks, flow_failures, mark
from ductaflow.conductor.plan import ScenarioPlan, SweepPlan
from ductaflow.conductor.progress import Reporter
from ductaflow.conductor.search import Search
from ductaflow.conductor.spans import SweepSpans
from ductaflow.conductor.tasks import BuildOutcome
from ductaflow.core.clock import now_iso
from ductaflow.core.context import RunContext
from ductaflow.core.liveness import identity
from ductaflow.errors import DuctaflowError
from ductaflow.lifecycle.dispatch import ConsumerFailure, Dispatcher
from ductaflow.lifecycle.events import EventKind, ScenarioEvent
from ductaflow.report.page import write_report
from ductaflow.report.spec import ReportSpec
from ductaflow.store.atomic import atomic_write_json
from ductaflow.store.layout import ATTEMPTS_DIR, SPOOL_DIR
from ductaflow.store.ledger import append_runs, ingest_spool
from ductaflow.store.metrics import collect_metrics
from ductaflow.store.records import InstanceSummary, summarize_instance
from ductaflow.store.sweep_state import StateWriter, earlier_rows, state_path

log = logging.getLogger(__name__)

#: A live report that took t seconds to write is not rewritten for the next 19t seconds.
_REPORT_COST_FACTOR = 19.0
_LIGHTS = ("green", "orange", "red")


def state_row(scenario: ScenarioPlan, build: str) -> dict[str, Any]:
    """A scenario's row in the conductor state file before anything ran (JSON, so a dict).

    ``state`` goes pending -> running -> done (or skipped: up to date; cancelled: never
    started); ``status`` is the light, ``dir`` the instance folder under the runs root.
    """
    return {
        "instance": scenario.instance,
        "dir": f"{build}/{scenario.instance}",
        "values": scenario.values,
        "state": "pending",
        "status": None,
        "duration": None,
        "error": None,
        "worst_flow": None,
        "metrics": {},
        "sweep": None,
        "replicate": scenario.config.get("_replicate"),  # set by replicates: the report groups these
        "parent": scenario.parent,  # a follow-up: the instance whose result proposed it
        "attempts": 0,  # starts of its build in this sweep, retries included
        "kind": None,  # a red row's failure kind (core.failures)
    }


class ConductorRun:
    """The conductor's bookkeeping for one conduct() call."""

    def __init__(self, plan: SweepPlan, sweep: str | None = None, report: ReportSpec | None = None) -> None:
        self.plan = plan
        self.sweep = sweep  # this call's id, recorded in the rows it runs
        self.report = report  # conduct(report=...): what the report compares (else the project's settings)
        self.runs_root = plan.runs_root
        self.state_path = state_path(plan.runs_root, plan.name)
        self.store = StateWriter(self.state_path)
        #: the attempt files of this call's tasks (see :mod:`ductaflow.conductor.attempts`)
        self.attempts = plan.runs_root / ATTEMPTS_DIR / f"{plan.name}-{os.getpid()}-{time.time_ns()}"
        self.started = now_iso()
        self.state = "running"  # then finished, stopped (fail-fast) or interrupted
        # who writes this state: a report can tell a conductor that was killed from one that runs
        self.owner = identity()
        self.rows: dict[str, dict[str, Any]] = {p.instance: state_row(p, plan.name) for p in plan.scenarios}
        # rows of earlier sweeps of other instances, carried on unchanged (the report shows them all)
        self.earlier, self.earlier_columns = earlier_rows(self.state_path, plan.runs_root, self.rows)
        self._counts = dict.fromkeys(_LIGHTS, 0)
        self._counted: dict[str, str] = {}  # instance -> the light it is counted under
        self._report_due = 0.0  # monotonic time before which a live report is not rewritten
        self.bulk = False  # marking many rows at once: the caller saves once afterwards
        self._claimed = False  # this call's attempts folder has its owner file
        self.events: Dispatcher[ScenarioEvent] = Dispatcher()
        self.events.add("state file", self._on_event, required=True)
        self.hooks = SweepHooks(plan.hooks)
        self.spans = SweepSpans()
        self.events.add("hooks", self._on_hooks)
        self.failures: list[ConsumerFailure] = []
        self.search: Search | None = None  # the sweep's search state, once attached (conduct does)

    def attach(self, search: Search) -> None:
        """Keep ``search`` (the sweep's nodes) in step with the rows: a consumer of their events."""
        self.search = search
        self.events.add("sweep state", search.on_event)

    def extend(self, plan: SweepPlan, added: Iterable[ScenarioPlan]) -> None:
        """The sweep grew (follow-ups): ``plan`` is the plan with ``added`` in it; they get rows."""
        self.plan = plan
        for p in added:
            self.rows[p.instance] = state_row(p, plan.name)

    def emit(self, kind: EventKind, instance: str) -> None:
        """Hand the scenario's event to every consumer (its row as it stands now)."""
        self._count(instance)
        self.failures.extend(self.events.emit(ScenarioEvent.now(kind, self.plan.name, self.rows[instance])))

    def _on_event(self, event: ScenarioEvent) -> None:
        """Consumer: the row's change in the state file (and the live report after an end)."""
        if self.bulk:
            return
        try:
            self.store.change(self.rows[event.instance], event.at, self.document)
        except OSError as exc:
            raise self._unwritable(exc) from None
        if event.kind is not EventKind.STARTED:
            self._maybe_report()

    def _on_hooks(self, event: ScenarioEvent) -> None:
        """Consumer: the scenario's hooks; one that raised is kept in its row (saved at once)."""
        row = self.rows[event.instance]
        if self.hooks.scenario(event, row):
            self._count(event.instance)
            if not self.bulk:
                self.store.change(row, event.at, self.document)

    def sweep_event(self, kind: str) -> None:
        """The sweep's span, and ``on_sweep_start`` / ``on_sweep_end``; failures are kept in the
        state file (saved at the end)."""
        if kind == "start":
            self.spans.start_sweep(self.plan.name, self.sweep, len(self.plan.scenarios), len(self.plan.to_run))
        failed = self.hooks.sweep(kind, self)
        if kind == "end":
            self.spans.end_sweep(self.state, self.counts())
            if failed:
                self.save()

    def _count(self, instance: str) -> None:
        """Keep the light counts in step with the row's status (O(1); idempotent)."""
        status = self.rows[instance]["status"]
        was = self._counted.get(instance)
        if status == was:
            return
        if was is not None:
            self._counts[was] -= 1
            del self._counted[instance]
        if status in self._counts:
            self._counts[status] += 1
            self._counted[instance] = status

    def counts(self) -> dict[str, int]:
        """How many rows are green, orange and red so far."""
        return dict(self._counts)

    def column(self, key: str) -> list[Any]:
        """One field of every row, in table order."""
        return [self.rows[p.instance][key] for p in self.plan.scenarios]

    def document(self) -> dict[str, Any]:
        """The state file's content (the store adds its schema and journal id)."""
        return {
            "build": self.plan.name,
            "build_path": str(self.plan.build.path),
            "runs_root": str(self.runs_root),
            "state": self.state,
            "started": self.started,
            "updated": now_iso(),
            "finished": None if self.state == "running" else now_iso(),
            "columns": list(dict.fromkeys([*self.plan.columns, *self.earlier_columns])),
            "conductor": self.owner,
            "sweep": self.sweep,
            "scenarios": [*self.rows.values(), *self.earlier],
            **({"hook_failures": self.hooks.sweep_failures} if self.hooks.sweep_failures else {}),
            **({"report": self.report.to_record()} if self.report is not None else {}),
        }

    def save(self, report: bool = True) -> None:
        """Write the whole state file (a snapshot), the sweep's search state, then the report from
        disk; all atomically."""
        try:
            self.store.snapshot(self.document())
        except OSError as exc:
            raise self._unwritable(exc) from None
        if self.search is not None:
            self.search.save()
        self._claim_attempts()
        if report:
            self._maybe_report()

    def _unwritable(self, exc: OSError, what: str = "conductor state", path: Path | None = None) -> DuctaflowError:
        """A read-only or full disk, said plainly (never a traceback)."""
        return DuctaflowError(
            f"cannot write the {what} {path or self.state_path}: {exc.strerror or exc}; "
            "the runs root must be writable and have free space"
        )

    def _maybe_report(self) -> None:
        """The report, when its time budget allows (always once the run is no longer running)."""
        if self.state != "running" or time.monotonic() >= self._report_due:
            self._write_report()

    def _write_report(self) -> None:
        t0 = time.monotonic()
        try:
            write_report(self.runs_root)
        except Exception as exc:  # noqa: BLE001 - a report problem must not stop the builds
            log.warning("could not write the status report: %s", exc)
        # The report is rebuilt from disk, so its cost grows with the table: rewriting it after
        # every build would make a long table quadratic. Rewrite at most at the pace that
        # keeps it under a twentieth of the time (the final report is always written): while
        # it writes, the loop records and launches nothing (with a fifth, 16 % of a 1,000-row
        # conduct went to reports).
        self._report_due = time.monotonic() + _REPORT_COST_FACTOR * (time.monotonic() - t0)

    def summary(self, instance: str) -> InstanceSummary:
        """The instance as its records on disk say it is."""
        return summarize_instance(self.plan.instance_dir(instance), self.plan.name)

    def _record_sweep(self, instance: str) -> str | None:
        """The sweep of the instance's build record on disk (an up-to-date instance keeps its own)."""
        build = self.summary(instance).build
        return build.sweep if build else None

    def start(self, instance: str) -> None:
        row = self.rows[instance]
        row["state"] = "running"
        row["attempts"] = int(row.get("attempts") or 0) + 1

    def retrying(self, outcome: BuildOutcome) -> None:
        """A red attempt that will be retried: its failure is kept in the row, which stays running."""
        row = self.rows[outcome.instance]
        row.update(error=outcome.error, kind=outcome.kind, worst_flow=outcome.worst_flow)

    def finish(self, outcome: BuildOutcome) -> dict[str, Any]:
        """Record a build's outcome (and the metrics its flows recorded); returns its row."""
        row = self.rows[outcome.instance]
        row.update(outcome.row_fields())
        ran = not (outcome.skipped or outcome.not_run)
        row["sweep"] = self.sweep if ran else self._record_sweep(outcome.instance)
        if row["duration"] is None:  # a lost build reports none: take it from its record
            build = self.summary(outcome.instance).build
            row["duration"] = build.duration if build else None
        row["metrics"] = collect_metrics(self.plan.instance_dir(outcome.instance))
        if self.hooks.hooks and ran:  # hooks that raised in the worker are in the records
            summary = self.summary(outcome.instance)
            mark(row, flow_failures([summary.build, *summary.flows]), self.hooks.hooks.policy)
        self._count(outcome.instance)
        return row

    def unstart(self, instance: str) -> None:
        """A build handed to a cluster that never began (a Ctrl-C while it queued): pending again,
        so that an interrupt cancels it rather than calling it red."""
        self.rows[instance]["state"] = "pending"

    def cancel(self, instances: Iterable[str], reason: str | None = None) -> None:
        """Scenarios that will not be started (fail-fast; ``reason``: given up, e.g. ``not_run: no
        worker``): one event each, one save for all."""
        self.bulk = True
        try:
            for instance in instances:
                self.rows[instance]["state"] = "cancelled"
                if reason:
                    self.rows[instance]["error"] = reason
                self.emit(EventKind.CANCELLED, instance)
        finally:
            self.bulk = False
        self.save()

    def interrupt(self) -> None:
        """After a Ctrl-C: builds still running are red ``interrupted`` (the rest of their row
        from their records), pending ones cancelled, red ones without an error interrupted."""
        for instance, row in self.rows.items():
            if row["state"] == "running":
                summary = self.summary(instance)
                row.update(
                    state="done",
                    status="red",
                    error="interrupted",
                    worst_flow=summary.worst_flow,
                    duration=summary.build.duration if summary.build else None,
                )
            elif row["state"] == "pending":
                row["state"] = "cancelled"
            elif row["state"] == "done" and row["status"] == "red" and not row["error"]:
                row["error"] = "interrupted"
            self._count(instance)

    def close(self, interrupted: bool) -> None:
        """The final state and report."""
        if interrupted:
            self.state = "interrupted"
        elif self.state == "running":
            self.state = "finished"
        self.save()

    def mark_up_to_date(self, reporter: Reporter) -> None:
        """Rows whose instance is up to date: filled from disk, logged once in the ledger."""
        skipped: list[tuple[Any, str, Any]] = []
        self.bulk = True  # the caller saves once: a no-op re-run of 10,000 rows writes one state file
        try:
            for p in self.plan.scenarios:
                if not self.plan.decisions[p.instance].run:
                    skipped.extend(self._up_to_date(p))
        finally:
            self.bulk = False
        if skipped:
            # the skip is an event of this sweep; the instance's record keeps the sweep that ran it
            ctx = RunContext(str(self.plan.project_root), str(self.runs_root), build=self.plan.name, sweep=self.sweep)
            append_runs(ctx.ledger_fields(), skipped)
            reporter.message(f"{len(skipped)} scenario(s) up to date; not re-run (use force=True / --force to re-run)")

    def fill_up_to_date(self, p: ScenarioPlan) -> None:
        """One scenario added to the sweep (a follow-up) that is up to date: its row from disk, its ledger item."""
        skipped = self._up_to_date(p)
        if skipped:
            ctx = RunContext(str(self.plan.project_root), str(self.runs_root), build=self.plan.name, sweep=self.sweep)
            append_runs(ctx.ledger_fields(), skipped)

    def _up_to_date(self, p: ScenarioPlan) -> list[tuple[Any, str, Any]]:
        """One up-to-date row filled from disk; its ledger item (none when it has no build record)."""
        decision = self.plan.decisions[p.instance]
        summary = self.summary(p.instance)
        status = summary.status or (decision.record.status if decision.record else None)
        self.rows[p.instance].update(
            state="skipped",
            status=status.value if status else None,
            duration=summary.build.duration if summary.build else None,
            error=summary.error,
            worst_flow=summary.worst_flow,
            metrics=collect_metrics(self.plan.instance_dir(p.instance)),
            sweep=summary.build.sweep if summary.build else None,
        )
        self.emit(EventKind.SKIPPED, p.instance)  # counts it
        return [] if summary.build is None else [(replace(summary.build, skipped=True), "skip", p.values)]

    def ingest_leftovers(self) -> None:
        """What killed conductors left: ledger records in the spool go into the ledger first,
        and their attempt folders go."""
        folder = self.runs_root / SPOOL_DIR / self.plan.name
        if folder.is_dir():
            for spool in sorted(p for p in folder.iterdir() if p.is_dir()):
                ingest_spool(self.runs_root, spool)
        remove_stale_attempts(self.runs_root, keep=self.attempts)

    def _claim_attempts(self) -> None:
        """Make this call's attempts folder with its owner inside, so no other conductor takes it for stale.

        Done with the first state file, before any task starts: the state file's commit stays
        the conductor's first rename (what a killed conductor leaves is that state file's).
        """
        if self._claimed:
            return
        self._claimed = True
        try:
            atomic_write_json(self.attempts / OWNER_FILE, self.owner)
        except OSError as exc:
            raise self._unwritable(exc, "conductor's attempts folder", self.attempts) from None

    def clean_up(self) -> None:
        """Remove this call's attempt files, stale ones of killed conductors, and bookkeeping
        folders left empty."""
        shutil.rmtree(self.attempts, ignore_errors=True)
        remove_stale_attempts(self.runs_root)
        spool = self.runs_root / SPOOL_DIR
        for folder in (self.attempts.parent, spool / self.plan.name, spool):
            try:
                folder.rmdir()
            except OSError:
                pass
