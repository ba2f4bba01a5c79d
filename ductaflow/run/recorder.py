"""The lifecycle of one run, in one place: the events it emits and the consumers every run has.

Whichever way a flow runs, it calls :meth:`Lifecycle.started` once its ``running`` record
should exist and :meth:`Lifecycle.ended` exactly once with its final result (or
:meth:`Lifecycle.skipped` when it was up to date). The status record is the first, required
consumer; then the run's hooks (:mod:`ductaflow.lifecycle.hooks`): a hook that raised on the
final event is added to the record, which is written again; the ledger row comes last, from
the record as it finally stands.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ductaflow.core.context import RunContext
from ductaflow.core.failures import HOOK_FAILED_ERROR, FailureKind, Phase
from ductaflow.core.lights import Status
from ductaflow.core.provenance import collect, environment
from ductaflow.lifecycle import tracing
from ductaflow.lifecycle.dispatch import ConsumerFailure, Dispatcher
from ductaflow.lifecycle.events import EventKind, RunEvent, ending
from ductaflow.lifecycle.hooks import Hooks
from ductaflow.run.attempts import classified
from ductaflow.run.tracking import Tracking
from ductaflow.store.envs import write_environment
from ductaflow.store.layout import artifact_path, runs_root_of
from ductaflow.store.ledger import append_run
from ductaflow.store.records import close_unfinished, owner_facts, status_files, write_status
from ductaflow.store.result import ErrorInfo, FlowResult, HookFailure, RunState

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
    """The consumers every run has before its hooks: its status record (required), its environment's file."""
    dispatcher: Dispatcher[RunEvent] = Dispatcher()
    return dispatcher.add("status record", status_record, required=True).add("environment file", environment_file)


def ledger_dispatcher() -> Dispatcher[RunEvent]:
    """The consumers every run has after its hooks: the ledger."""
    dispatcher: Dispatcher[RunEvent] = Dispatcher()
    return dispatcher.add("ledger", ledger_row)


def with_hook_failures(result: FlowResult, failures: tuple[HookFailure, ...], policy: str) -> FlowResult:
    """``result`` with hooks that raised on it recorded; red when the policy says so (``red``, ``stop``)."""
    if not failures:
        return result
    result = replace(result, hook_failures=(*result.hook_failures, *failures))
    if policy != "record" and result.status is not Status.RED:
        first = failures[0]
        error = ErrorInfo(HOOK_FAILED_ERROR, f"{first.hook}.{first.method} raised {first.error}", first.traceback)
        kind, phase = FailureKind.HOOK_FAILED.value, Phase.FINALIZE.value
        result = replace(result, status=Status.RED, error=error, kind=kind, phase=phase)
    return result


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
    """The events of one run, handed to its dispatcher's consumers, its hooks, then the ledger."""

    context: RunContext
    dispatcher: Dispatcher[RunEvent] = field(default_factory=standard_dispatcher)
    failures: list[ConsumerFailure] = field(default_factory=list)
    #: the run's hooks; None: the project's, the entry points' and the context's, made on first use
    hooks: Hooks | None = None
    after: Dispatcher[RunEvent] = field(default_factory=ledger_dispatcher)
    _ended: bool = False
    _hook_failures: tuple[HookFailure, ...] = ()  # raised before the end (on_flow_start)
    last: FlowResult | None = None  # the record as the last event left it
    tracking: Tracking | None = None  # the run's tracker runs; None: made from the context on start
    span: Any = None  # the run's OpenTelemetry span while it runs (None: tracing is off)
    marked: tuple[str, ...] = ()  # files the flow marked with ductaflow.artifacts (its trackers log them)

    def started(self, running: FlowResult) -> None:
        self._emit(EventKind.STARTED, running)

    def ended(self, result: FlowResult) -> FlowResult:
        """Emit the one final event of this run (a second call is a bug, and ignored with a log line);
        returns the final record, with any hook that raised on it. A red one without a failure
        kind gets the kind its flags say (every red final record has one)."""
        if self._ended:
            log.error("run of %s in %s ended twice; keeping the first record", result.flow, result.execution_dir)
            return result
        self._ended = True
        result = classified(result)
        self._emit(ending(result), result)
        return self.last or result

    def skipped(self, result: FlowResult) -> None:
        self._emit(EventKind.SKIPPED, result)

    def lost(self, result: FlowResult) -> None:
        self._emit(EventKind.LOST, result)

    def _emit(self, kind: EventKind, result: FlowResult) -> None:
        hooks = self._hooks()
        final = kind in _FINAL
        if kind is EventKind.STARTED:
            self.tracking = self.tracking or Tracking(self.context)
            result = self.tracking.start(result)  # its bindings go into the running record
            self.span = tracing.start(f"flow {result.flow}", self.context.trace_parent, {
                "ductaflow.flow": result.flow, "ductaflow.instance": result.instance,
                "ductaflow.sweep": self.context.sweep, "ductaflow.build": self.context.build})  # fmt: skip
            result = replace(result, trace_id=tracing.trace_id(self.span, self.context.trace_parent))
        if final and self.tracking is not None:
            trace = tracing.trace_id(self.span, self.context.trace_parent)
            result = replace(result, trackers=self.tracking.bindings, trace_id=trace)
            self.tracking.end(result, self.marked)  # before the final record: a failure is recorded in it
            self._hook_failures += tuple(self.tracking.failures)
        if final:  # hooks that raised at the start are in the final record the first time it is written
            result = with_hook_failures(result, self._hook_failures, hooks.policy)
        event = RunEvent.now(kind, result, self.context)
        self.failures.extend(self.dispatcher.emit(event))
        failed = hooks.flow(event) if hooks else ()
        if failed and final:
            event = RunEvent(kind, with_hook_failures(result, failed, hooks.policy), self.context, event.at)
            write_status(event.result)
        elif failed:
            self._hook_failures += failed
        self.failures.extend(self.after.emit(event))
        self.last = event.result
        if final:
            last = event.result
            tracing.end(self.span, {"ductaflow.light": last.status.value, "ductaflow.duration_s": last.duration,
                                    "ductaflow.peak_rss_mb": last.peak_rss_mb},
                        last.error.summary if last.status is Status.RED and last.error else None)  # fmt: skip
            self.span = None

    def _hooks(self) -> Hooks:
        if self.hooks is None:
            ctx = self.context
            self.hooks = Hooks.load(ctx.project_root, ctx.hooks, ctx.hooks_fail)
        return self.hooks


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
