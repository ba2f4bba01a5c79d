"""The lifecycle of one run, in one place: the events it emits and the consumers every run has.

Whichever way a flow runs, it calls :meth:`Lifecycle.started` once its ``running`` record
should exist and :meth:`Lifecycle.ended` exactly once with its final result (or
:meth:`Lifecycle.skipped` when it was up to date). The status record is the first, required
consumer; the ledger follows; callers may add their own (progress, report, later hooks).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

from ductaflow.core.context import RunContext
from ductaflow.core.lights import Status
from ductaflow.core.provenance import collect, environment
from ductaflow.lifecycle.dispatch import ConsumerFailure, Dispatcher
from ductaflow.lifecycle.events import EventKind, RunEvent, ending
from ductaflow.store.envs import write_environment
from ductaflow.store.layout import artifact_path, runs_root_of
from ductaflow.store.ledger import append_run
from ductaflow.store.records import close_unfinished, owner_facts, status_files, write_status
from ductaflow.store.result import ErrorInfo, FlowResult, RunState

log = logging.getLogger(__name__)

_FINAL = (EventKind.FINISHED, EventKind.FAILED, EventKind.CANCELLED)


def status_record(event: RunEvent) -> None:
    """Consumer: the running record on start, the one final record at the end."""
    if event.kind is EventKind.STARTED or event.kind in _FINAL:
        write_status(event.result)


def ledger_row(event: RunEvent) -> None:
    """Consumer: one ledger row per execution, skip and loss."""
    if not event.context.runs_root:
        return
    if event.kind in (*_FINAL, EventKind.LOST):
        append_run(event.context.ledger_fields(), event.result, event="run")
    elif event.kind is EventKind.SKIPPED:
        append_run(event.context.ledger_fields(), event.result, event="skip")


def environment_file(event: RunEvent) -> None:
    """Consumer: on start, the run's distribution list under its runs root (once per environment)."""
    prov = event.result.provenance
    if event.kind is not EventKind.STARTED or prov is None or prov.env_hash is None:
        return
    runs_root = event.context.runs_root or runs_root_of(event.result.execution_dir)
    env = environment()
    if runs_root is not None and env is not None and env.hash == prov.env_hash:
        write_environment(runs_root, env)


def standard_dispatcher() -> Dispatcher[RunEvent]:
    """The consumers every run has: its status record (required), its environment's file, the ledger."""
    dispatcher: Dispatcher[RunEvent] = Dispatcher()
    dispatcher.add("status record", status_record, required=True).add("environment file", environment_file)
    return dispatcher.add("ledger", ledger_row)


def running_record(result: FlowResult, mode: str, project_root: str | Path | None = None) -> FlowResult:
    """``result`` as the record written before the first cell: red until it ends, owned by this
    process, with the provenance of the code at ``project_root`` and of this environment."""
    prov = collect(project_root)
    if result.kernel is not None:  # another kernelspec: its interpreter and packages are not this process's
        prov = replace(prov, env_hash=None, executable=f"kernelspec {result.kernel}")
    return replace(
        result, status=Status.RED, state=RunState.RUNNING.value, mode=mode, provenance=prov, **owner_facts()
    )


@dataclass
class Lifecycle:
    """The events of one run, handed to its dispatcher's consumers."""

    context: RunContext
    dispatcher: Dispatcher[RunEvent] = field(default_factory=standard_dispatcher)
    failures: list[ConsumerFailure] = field(default_factory=list)
    _ended: bool = False

    def started(self, running: FlowResult) -> None:
        self._emit(EventKind.STARTED, running)

    def ended(self, result: FlowResult) -> FlowResult:
        """Emit the one final event of this run (a second call is a bug, and ignored with a log line)."""
        if self._ended:
            log.error("run of %s in %s ended twice; keeping the first record", result.flow, result.execution_dir)
            return result
        self._ended = True
        self._emit(ending(result), result)
        return result

    def skipped(self, result: FlowResult) -> None:
        self._emit(EventKind.SKIPPED, result)

    def lost(self, result: FlowResult) -> None:
        self._emit(EventKind.LOST, result)

    def _emit(self, kind: EventKind, result: FlowResult) -> None:
        self.failures.extend(self.dispatcher.emit(RunEvent.now(kind, result, self.context)))


def close_open_runs(
    instance_dir: Path, build: str, context: RunContext, error: ErrorInfo, *, interrupted: bool = False
) -> int:
    """Runs of a build instance whose process vanished end here: every unfinished record (the
    build's, then its flows') is closed red with ``error``, and its ``lost`` event reaches the
    run's consumers (a ledger row with its duration), as its owner would have sent its end.
    Called by whoever knows why (the conductor, or a worker re-running a lost task); returns
    how many were closed."""
    closed = 0
    for path in [artifact_path(instance_dir, build, "status"), *status_files(instance_dir)]:
        final = close_unfinished(path, error, interrupted=interrupted)
        if final is not None:
            Lifecycle(context).lost(final)
            closed += 1
    return closed
