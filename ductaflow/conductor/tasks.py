"""What crosses the boundary between the conductor and its workers: a :class:`BuildTask` (everything
the conductor decided for one instance, its run-or-skip
:class:`~ductaflow.run.decide.Decision` included) goes out, a :class:`BuildOutcome` comes back.

Both are frozen dataclasses of plain values, pickled by whatever executes the build (a local
process, this process, a Dask worker on another machine). This module holds no code that runs a
build, so the conductor's planning and recording side can use them without loading the kernel
machinery (:mod:`ductaflow.conductor.worker` runs them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ductaflow.core.context import RunContext
from ductaflow.core.failures import FailureKind
from ductaflow.core.lights import Status
from ductaflow.run.attempts import retry_facts
from ductaflow.run.decide import Decision
from ductaflow.store.result import FlowResult

#: The error text of a build whose worker died; the conductor's rows and records start with it.
WORKER_LOST = "worker_lost"
#: The error text of a build that ran where the conductor cannot read its files.
SHARED_FILESYSTEM = "shared_filesystem"
#: The error text of a scenario given up before it started (no worker left, the cluster lost).
NOT_RUN = "not_run"


@dataclass(frozen=True)
class BuildTask:
    """One build instance to run, as the conductor decided it (pickled to the worker)."""

    build_path: Path
    config: Mapping[str, Any]
    instance_dir: Path
    project_root: Path
    instance: str
    #: build, scenario, runs root and ledger spool: what the build's records are labelled with
    context: RunContext
    #: the conductor's run-or-skip decision; trusted unless the run waits for the instance lock
    decision: Decision | None = None
    timeout: float | None = None
    force: bool = False
    #: counts the starts of this task: past ``1 + lost_retries`` the build is reported lost
    attempt_file: Path | None = None
    lost_retries: int = 0
    #: the conductor's :func:`~ductaflow.core.liveness.identity`: workers it started stop with it
    conductor: Mapping[str, Any] | None = None
    preload: tuple[str, ...] = ()
    #: the socket of the conductor's warm kernel template (local workers fork kernels from it)
    kernel_template: str | None = None
    #: which notebooks become pages once the build has ended: "failed" (red, orange), "all", "none"
    html: str = "failed"
    attempt: int = 1  # the conductor's retries: 2 is the first retry of this instance in this sweep


@dataclass(frozen=True)
class BuildOutcome:
    """What became of one :class:`BuildTask` (pickled back to the conductor)."""

    instance: str
    status: Status
    duration: float | None = None
    error: str | None = None
    worst_flow: str | None = None
    interrupted: bool = False
    skipped: bool = False  # up to date after all (another run got there first)
    notes: tuple[str, ...] = ()
    lost: bool = False  # the worker died: its records still say "running"
    worker: str | None = None  # host:pid of the process that ran it (named when its files are not here)
    started: str | None = None  # the build record's start time: which record the conductor must find
    not_run: bool = False  # never started, and given up (the cluster went away): no light
    kind: str | None = None  # a red build's failure kind (core.failures), from its record or the worker
    phase: str | None = None
    error_type: str | None = None  # the exception type a red build's record names (retry_on may list it)

    def row_fields(self) -> dict[str, Any]:
        """The fields of a conductor state row this outcome sets."""
        return {
            "state": "cancelled" if self.not_run else "skipped" if self.skipped else "done",
            "status": None if self.not_run else self.status.value,
            "duration": self.duration,
            "error": self.error,
            "worst_flow": self.worst_flow,
            "kind": self.kind if self.status is Status.RED and not self.not_run else None,
        }


def lost_outcome(instance: str, detail: str) -> BuildOutcome:
    """The outcome of a build whose worker was lost."""
    return BuildOutcome(instance, Status.RED, error=f"{WORKER_LOST}: {detail}", lost=True,
                        kind=FailureKind.WORKER_LOST.value)  # fmt: skip


Failure = tuple[str | None, str | None, str | None]  # failure kind, phase, exception type


def failure_fields(build: FlowResult | None) -> Failure:
    """A build's failure kind, phase and exception type, as its status record says (None when green)."""
    if build is None or build.status is not Status.RED:
        return None, None, None
    kind, error_type = retry_facts(build)  # a build red from a step: that step's error type
    return kind or FailureKind.USER_ERROR.value, build.phase, error_type
