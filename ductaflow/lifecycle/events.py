"""The moments of a run, as typed events: started, finished, skipped, failed, cancelled, lost.

Every way a flow runs (a kernel through papermill, script mode, a step of a build, a
conductor's worker, a Dask task) reports through these; the status record, the ledger,
progress display and report are consumers (see :mod:`ductaflow.lifecycle.dispatch`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Any

from ductaflow.core.clock import now_iso
from ductaflow.core.context import RunContext
from ductaflow.core.lights import Status
from ductaflow.store.result import FlowResult


class EventKind(str, Enum):
    """What happened to a run."""

    STARTED = "started"  # a running record exists; the flow's first cell is next
    FINISHED = "finished"  # ended green or orange
    FAILED = "failed"  # ended red: raised, exited non-zero, died, timed out, terminated
    CANCELLED = "cancelled"  # ended by an interrupt (Ctrl-C, a conductor's stop)
    SKIPPED = "skipped"  # up to date: nothing ran, the last record stands
    LOST = "lost"  # its process vanished without a final record (closed by someone else)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class RunEvent:
    """One moment of one run, in the process that runs the flow: the record as it stands
    then, and whose run it is."""

    kind: EventKind
    result: FlowResult
    context: RunContext
    at: str

    @classmethod
    def now(cls, kind: EventKind, result: FlowResult, context: RunContext) -> RunEvent:
        return cls(kind, result, context, now_iso())

    @property
    def subject(self) -> str:
        return self.result.flow


@dataclass(frozen=True)
class ScenarioEvent:
    """One moment of one scenario of a sweep, in the conductor process: its row in the
    conductor's state as it stands then (a copy: consumers cannot change it)."""

    kind: EventKind
    build: str
    instance: str
    row: Mapping[str, Any]
    at: str

    @classmethod
    def now(cls, kind: EventKind, build: str, row: Mapping[str, Any]) -> ScenarioEvent:
        return cls(kind, build, str(row["instance"]), MappingProxyType(dict(row)), now_iso())

    @property
    def subject(self) -> str:
        return self.instance


def ending(result: FlowResult) -> EventKind:
    """The event a final record stands for."""
    if result.interrupted and not result.terminated:
        return EventKind.CANCELLED
    return EventKind.FAILED if result.status is Status.RED else EventKind.FINISHED
