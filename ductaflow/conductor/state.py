"""The conductor's bookkeeping for one conduct() call: a row per scenario, the state file
and the pace of the live report.

The conductor process alone writes these files. The state file
(``<runs root>/.ductaflow/conductor/<build>.json``) is what the report reads; each of its
rows is a JSON object made by :func:`state_row` and updated here as builds start and end.

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
from typing import Any

from ductaflow.conductor.plan import ScenarioPlan, SweepPlan
from ductaflow.conductor.progress import Reporter
from ductaflow.conductor.worker import BuildOutcome
from ductaflow.core.clock import now_iso
from ductaflow.core.context import RunContext
from ductaflow.core.liveness import identity
from ductaflow.errors import DuctaflowError
from ductaflow.lifecycle.dispatch import ConsumerFailure, Dispatcher
from ductaflow.lifecycle.events import EventKind, ScenarioEvent
from ductaflow.report.page import write_report
from ductaflow.store.atomic import atomic_write_json
from ductaflow.store.layout import SPOOL_DIR, STATE_DIR
from ductaflow.store.ledger import append_runs, ingest_spool
from ductaflow.store.metrics import collect_metrics
from ductaflow.store.records import InstanceSummary, summarize_instance

log = logging.getLogger(__name__)

STATE_SCHEMA = 1
#: A live report that took t seconds to write is not rewritten for the next 4t seconds.
_REPORT_COST_FACTOR = 4.0


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
    }


class ConductorRun:
    """The conductor's bookkeeping for one conduct() call."""

    def __init__(self, plan: SweepPlan) -> None:
        self.plan = plan
        self.runs_root = plan.runs_root
        self.state_path = plan.runs_root / STATE_DIR / f"{plan.name}.json"
        #: the attempt files of this call's tasks (see :func:`ductaflow.conductor.worker.claim_attempt`)
        self.attempts = plan.runs_root / STATE_DIR / "attempts" / f"{plan.name}-{os.getpid()}-{time.time_ns()}"
        self.started = now_iso()
        self.state = "running"  # then finished, stopped (fail-fast) or interrupted
        # who writes this state: a report can tell a conductor that was killed from one that runs
        self.owner = identity()
        self.rows: dict[str, dict[str, Any]] = {p.instance: state_row(p, plan.name) for p in plan.scenarios}
        self._report_due = 0.0  # monotonic time before which a live report is not rewritten
        self._bulk = False  # marking many rows at once: the caller saves once afterwards
        self.events: Dispatcher[ScenarioEvent] = Dispatcher()
        self.events.add("state file", self._on_event, required=True)
        self.failures: list[ConsumerFailure] = []

    def emit(self, kind: EventKind, instance: str) -> None:
        """Hand the scenario's event to every consumer (its row as it stands now)."""
        self.failures.extend(self.events.emit(ScenarioEvent.now(kind, self.plan.name, self.rows[instance])))

    def _on_event(self, event: ScenarioEvent) -> None:
        """Consumer: the state file after each start and end (and the live report after an end)."""
        if not self._bulk:
            self.save(report=event.kind is not EventKind.STARTED)

    def counts(self) -> dict[str, int]:
        out = {"green": 0, "orange": 0, "red": 0}
        for row in self.rows.values():
            if row["status"] in out:
                out[row["status"]] += 1
        return out

    def column(self, key: str) -> list[Any]:
        """One field of every row, in table order."""
        return [self.rows[p.instance][key] for p in self.plan.scenarios]

    def document(self) -> dict[str, Any]:
        """The state file's content."""
        return {
            "schema": STATE_SCHEMA,
            "build": self.plan.name,
            "build_path": str(self.plan.build.path),
            "runs_root": str(self.runs_root),
            "state": self.state,
            "started": self.started,
            "updated": now_iso(),
            "finished": None if self.state == "running" else now_iso(),
            "columns": list(self.plan.columns),
            "conductor": self.owner,
            "scenarios": list(self.rows.values()),
        }

    def save(self, report: bool = True) -> None:
        """Write the state file, then the report from disk; both atomically."""
        try:
            atomic_write_json(self.state_path, self.document())
        except OSError as exc:  # read-only or full disk: say so and stop, never a traceback
            raise DuctaflowError(
                f"cannot write the conductor state {self.state_path}: {exc.strerror or exc}; "
                "the runs root must be writable and have free space"
            ) from None
        if report and (self.state != "running" or time.monotonic() >= self._report_due):
            self._write_report()

    def _write_report(self) -> None:
        t0 = time.monotonic()
        try:
            write_report(self.runs_root)
        except Exception as exc:  # noqa: BLE001 - a report problem must not stop the builds
            log.warning("could not write the status report: %s", exc)
        # The report is rebuilt from disk, so its cost grows with the table: rewriting it after
        # every build would make a long table quadratic. Rewrite at most at the pace that
        # keeps it under a fifth of the time (the final report is always written).
        self._report_due = time.monotonic() + _REPORT_COST_FACTOR * (time.monotonic() - t0)

    def summary(self, instance: str) -> InstanceSummary:
        """The instance as its records on disk say it is."""
        return summarize_instance(self.plan.instance_dir(instance), self.plan.name)

    def start(self, instance: str) -> None:
        self.rows[instance]["state"] = "running"

    def finish(self, outcome: BuildOutcome) -> dict[str, Any]:
        """Record a build's outcome (and the metrics its flows recorded); returns its row."""
        row = self.rows[outcome.instance]
        row.update(outcome.row_fields())
        if row["duration"] is None:  # a lost build reports none: take it from its record
            build = self.summary(outcome.instance).build
            row["duration"] = build.duration if build else None
        row["metrics"] = collect_metrics(self.plan.instance_dir(outcome.instance))
        return row

    def cancel(self, instances: Iterable[str]) -> None:
        """Scenarios that will not be started (fail-fast): one event each, one save for all."""
        self._bulk = True
        try:
            for instance in instances:
                self.rows[instance]["state"] = "cancelled"
                self.emit(EventKind.CANCELLED, instance)
        finally:
            self._bulk = False
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
        self._bulk = True  # the caller saves once: a no-op re-run of 10,000 rows writes one state file
        try:
            for p in self.plan.scenarios:
                if not self.plan.decisions[p.instance].run:
                    skipped.extend(self._up_to_date(p))
        finally:
            self._bulk = False
        if skipped:
            ctx = RunContext(str(self.plan.project_root), str(self.runs_root), build=self.plan.name)
            append_runs(ctx.ledger_fields(), skipped)
            reporter.message(f"{len(skipped)} scenario(s) up to date; not re-run (use force=True / --force to re-run)")

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
        )
        self.emit(EventKind.SKIPPED, p.instance)
        return [] if summary.build is None else [(replace(summary.build, skipped=True), "skip", p.values)]

    def ingest_leftovers(self) -> None:
        """Ledger records a killed conductor left in the spool go into the ledger first."""
        folder = self.runs_root / SPOOL_DIR / self.plan.name
        if folder.is_dir():
            for spool in sorted(p for p in folder.iterdir() if p.is_dir()):
                ingest_spool(self.runs_root, spool)

    def clean_up(self) -> None:
        """Remove this call's attempt files, and bookkeeping folders left empty."""
        shutil.rmtree(self.attempts, ignore_errors=True)
        spool = self.runs_root / SPOOL_DIR
        for folder in (self.attempts.parent, spool / self.plan.name, spool):
            try:
                folder.rmdir()
            except OSError:
                pass
