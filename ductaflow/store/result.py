"""A flow's status record, typed: what one execution in one instance directory came to.

A run is data: executing a flow always yields a :class:`FlowResult`, red or not. The same
facts are stored as ``<flow>_status.json``; :func:`to_record` / :func:`from_record` are the
only (de)serialisers of that file and :mod:`ductaflow.store.records` its only reader and
writer. Schema history (``schema`` key): 1 -- first release; 2 -- adds ``mode``, ``pid``,
``host``, ``owner_created``, ``terminated``, ``exit_code`` and the ``gone`` state (derived on
read, never written); 3 -- adds ``deps`` (what the run used: flows, project modules, input
files; see :mod:`ductaflow.core.deps`) and ``outputs`` (a digest of the files the run left in
its instance directory). Records of schemas 1 and 2 read as before, with no ``deps``;
4 -- adds ``kernel``; 5 -- adds ``sweep``; 6 -- adds ``provenance`` (the code and environment
the run was made with, see :mod:`ductaflow.core.provenance`; None in older records);
7 -- adds ``hook_failures`` (the hooks that raised on this run, see
:mod:`ductaflow.lifecycle.hooks`; empty in older records) and ``trackers`` (the experiment-tracker
runs this run is logged as, see :mod:`ductaflow.trackers`) and ``trace_id`` (its OpenTelemetry
trace, see :mod:`ductaflow.lifecycle.tracing`); 8 -- adds ``kind`` and ``phase`` (why and when a red
run failed, see :mod:`ductaflow.core.failures`; derived from the flags for an older red record, the
phase then unknown), ``attempt`` (which attempt of a retried run this is, 1 in older records) and
``history`` (the earlier attempts of the same run, one :class:`Attempt` each).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Any

from ductaflow.core.deps import Dep, from_records, to_records
from ductaflow.core.failures import derive_kind
from ductaflow.core.lights import Status
from ductaflow.core.provenance import Provenance
from ductaflow.store.layout import artifact_path

STATUS_SCHEMA = 8


class RunState(str, Enum):
    """Where a record is in its life: ``running`` until exactly one final record replaces it."""

    PREPARED = "prepared"  # --no-execute: config and notebook written, nothing run
    RUNNING = "running"  # written before the flow's first cell
    FINISHED = "finished"  # the final record
    GONE = "gone"  # read-time only: "running", but its process on this host is dead

    def __str__(self) -> str:
        return self.value


@lru_cache(maxsize=1024)
def _path(text: str) -> Path:
    """A flow's source path: the same few recur in thousands of records (Paths are immutable)."""
    return Path(text)


@dataclass(frozen=True)
class ErrorInfo:
    """What a red flow raised and where."""

    type: str
    message: str
    traceback: str = ""
    cell_index: int | None = None

    @property
    def summary(self) -> str:
        return f"{self.type}: {self.message}" if self.message else self.type


@dataclass(frozen=True)
class HookFailure:
    """A hook that raised on an event of a run: which hook and method, what it raised, and when."""

    hook: str  # its import spec, ``package.module:Name``
    method: str  # ``on_flow_end`` ...
    error: str  # ``TypeError: message``
    traceback: str = ""
    at: str | None = None

    def to_record(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(HookFailure)}

    @classmethod
    def from_record(cls, rec: Any) -> HookFailure | None:
        if not isinstance(rec, dict) or "hook" not in rec:
            return None
        at = rec.get("at")
        return cls(str(rec["hook"]), str(rec.get("method") or ""), str(rec.get("error") or ""),
                   str(rec.get("traceback") or ""), None if at is None else str(at))


@dataclass(frozen=True)
class TrackerBinding:
    """The experiment-tracker run a flow run is logged as: the way from one to the other."""

    backend: str  # the tracker's name: noop, mlflow, wandb, ...
    run_id: str
    project: str | None = None
    group: str | None = None
    url: str | None = None  # where to see it (a web page, or a local file)

    def to_record(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(TrackerBinding)}

    @classmethod
    def from_record(cls, rec: Any) -> TrackerBinding | None:
        if not isinstance(rec, dict) or not rec.get("backend") or not rec.get("run_id"):
            return None
        opt = {k: (None if rec.get(k) is None else str(rec[k])) for k in ("project", "group", "url")}
        return cls(str(rec["backend"]), str(rec["run_id"]), **opt)


@dataclass(frozen=True)
class Attempt:
    """An earlier attempt of a retried run, as its final record summed it up (schema 8)."""

    attempt: int
    status: str  # its light
    kind: str | None = None  # why it was red (a FailureKind value)
    phase: str | None = None
    started: str | None = None
    duration: float | None = None
    error: str | None = None  # ``Type: message``

    def to_record(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(Attempt)}

    @classmethod
    def from_record(cls, rec: Any) -> Attempt | None:
        if not isinstance(rec, dict) or not isinstance(rec.get("attempt"), int) or not rec.get("status"):
            return None
        text = {k: (None if rec.get(k) is None else str(rec[k])) for k in ("kind", "phase", "started", "error")}
        duration = rec.get("duration")
        return cls(rec["attempt"], str(rec["status"]), duration=duration if isinstance(duration, int | float) else None,
                   **text)  # fmt: skip


@dataclass(frozen=True)
class FlowResult:
    """The outcome of one flow execution in one instance directory."""

    flow: str
    flow_path: Path
    execution_dir: Path
    status: Status
    state: str  # a RunState value
    started: str | None = None
    finished: str | None = None
    duration: float | None = None
    warnings: tuple[str, ...] = ()
    error: ErrorInfo | None = None
    interrupted: bool = False
    timed_out: bool = False
    kernel_died: bool = False
    instance: str | None = None
    notes: tuple[str, ...] = field(default=())
    html_exported: bool = False
    fingerprint: str | None = None
    fingerprint_parts: dict[str, Any] | None = field(default=None, compare=False)
    peak_rss_mb: float | None = None
    skipped: bool = False  # up to date: this call ran nothing and returned the last record
    reasons: tuple[str, ...] = ()  # why it ran (new, config keys changed ...); empty when skipped
    terminated: bool = False  # ended by SIGTERM (a batch system's walltime, a kill)
    exit_code: int | None = None  # script mode: the process's exit status
    mode: str | None = None  # "papermill" or "script"
    pid: int | None = None  # the process that owns the run (its final record is written by it)
    host: str | None = None
    owner_created: float | None = None  # that process's start time: tells a reused pid apart
    deps: tuple[Dep, ...] | None = field(default=None, compare=False)  # None: not recorded
    outputs: str | None = None  # digest of the files the run left in its instance directory
    kernel: str | None = None  # the kernelspec it ran in; None: ductaflow's own Python kernel (schema 4)
    sweep: str | None = None  # the id of the conduct call it ran in (schema 5)
    provenance: Provenance | None = field(default=None, compare=False)  # what made it (schema 6)
    hook_failures: tuple[HookFailure, ...] = ()  # hooks that raised on this run (schema 7)
    trackers: tuple[TrackerBinding, ...] = ()  # experiment-tracker runs it is logged as (schema 7)
    trace_id: str | None = None  # the OpenTelemetry trace its span is in (schema 7)
    kind: str | None = None  # a red final record: why (a FailureKind value; schema 8)
    phase: str | None = None  # a red final record: when (a Phase value); None: not known
    attempt: int = 1  # which attempt of the run this record is (retries; schema 8)
    history: tuple[Attempt, ...] = ()  # the earlier attempts, oldest first (schema 8)

    @property
    def ok(self) -> bool:
        return self.status is not Status.RED

    @property
    def retried(self) -> int:
        """How many attempts came before this one (0: the first)."""
        return max(0, self.attempt - 1)

    @property
    def failure(self) -> str | None:
        """``kind in phase`` of a red final record ("kernel_died in execute"), else None."""
        if self.kind is None:
            return None
        return f"{self.kind} in {self.phase}" if self.phase else self.kind

    @property
    def attempts_note(self) -> str:
        """What ``ductaflow status`` and the report add to a run's light: its failure and how
        many retries it took ("kernel_died in execute", "after 2 retries"); "" for neither."""
        parts = [self.failure] if self.failure else []
        if self.retried:
            parts.append(f"after {self.retried} retr{'y' if self.retried == 1 else 'ies'}")
        return ", ".join(p for p in parts if p)

    def summary(self) -> Attempt:
        """This record as an entry of a later attempt's ``history``."""
        return Attempt(self.attempt, self.status.value, self.kind, self.phase, self.started, self.duration,
                       self.error.summary if self.error else None)  # fmt: skip

    @property
    def notebook_path(self) -> Path:
        return artifact_path(self.execution_dir, self.flow, "notebook")

    @property
    def log_path(self) -> Path:
        return artifact_path(self.execution_dir, self.flow, "log")

    @property
    def config_path(self) -> Path:
        return artifact_path(self.execution_dir, self.flow, "config")

    @property
    def status_path(self) -> Path:
        return artifact_path(self.execution_dir, self.flow, "status")

    @property
    def html_path(self) -> Path | None:
        return artifact_path(self.execution_dir, self.flow, "html") if self.html_exported else None

    @property
    def reason(self) -> str:
        """One short phrase saying why the light is what it is."""
        for flag, text in ((self.terminated, "terminated"), (self.interrupted, "interrupted"),
                           (self.timed_out, "timed out"), (self.kernel_died, "kernel died")):
            if flag:
                return text
        if self.state == RunState.GONE:
            return self.error.summary if self.error else "gone"
        if self.error:
            return self.error.summary
        if self.warnings:
            return f"{len(self.warnings)} warning line(s)"
        return "ok"

    def to_record(self) -> dict[str, Any]:
        """The JSON-ready status record written as ``<flow>_status.json``."""
        rec: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "skipped"}
        rec["schema"] = STATUS_SCHEMA
        rec["status"] = self.status.value
        rec["state"] = str(self.state)
        rec["flow_path"] = str(self.flow_path)
        rec["execution_dir"] = str(self.execution_dir)
        rec["warnings"] = list(self.warnings)
        rec["notes"] = list(self.notes)
        rec["reasons"] = list(self.reasons)
        rec["deps"] = None if self.deps is None else to_records(self.deps)
        rec["provenance"] = None if self.provenance is None else self.provenance.to_record()
        rec["hook_failures"] = [f.to_record() for f in self.hook_failures]
        rec["trackers"] = [t.to_record() for t in self.trackers]
        rec["history"] = [a.to_record() for a in self.history]
        rec["error"] = None if self.error is None else {f.name: getattr(self.error, f.name) for f in fields(ErrorInfo)}
        return rec

    @classmethod
    def from_record(cls, rec: dict[str, Any], execution_dir: Path | None = None) -> FlowResult:
        """Rebuild a result from a status record of any schema (``execution_dir`` overrides a moved dir)."""
        err = rec.get("error")
        folder = execution_dir or rec["execution_dir"]
        attempt = rec.get("attempt")
        return cls(
            flow=str(rec["flow"]),
            flow_path=_path(rec.get("flow_path") or rec["flow"]),
            execution_dir=folder if isinstance(folder, Path) else Path(folder),
            status=Status(rec["status"]),
            state=str(rec.get("state", "finished")),
            started=rec.get("started"),
            finished=rec.get("finished"),
            duration=rec.get("duration"),
            warnings=tuple(rec.get("warnings") or ()),
            error=ErrorInfo(**err) if isinstance(err, dict) else None,
            interrupted=bool(rec.get("interrupted")),
            timed_out=bool(rec.get("timed_out")),
            kernel_died=bool(rec.get("kernel_died")),
            instance=rec.get("instance"),
            notes=tuple(rec.get("notes") or ()),
            html_exported=bool(rec.get("html_exported")),
            fingerprint=rec.get("fingerprint"),
            fingerprint_parts=rec.get("fingerprint_parts"),
            peak_rss_mb=rec.get("peak_rss_mb"),
            reasons=tuple(rec.get("reasons") or ()),
            terminated=bool(rec.get("terminated")),
            exit_code=rec.get("exit_code"),
            mode=rec.get("mode"),
            pid=rec.get("pid"),
            host=rec.get("host"),
            owner_created=rec.get("owner_created"),
            deps=from_records(rec.get("deps")),
            outputs=rec.get("outputs"),
            kernel=rec.get("kernel"),
            sweep=rec.get("sweep"),
            provenance=Provenance.from_record(rec.get("provenance")),
            hook_failures=tuple(f for f in map(HookFailure.from_record, rec.get("hook_failures") or ()) if f),
            trackers=tuple(t for t in map(TrackerBinding.from_record, rec.get("trackers") or ()) if t),
            trace_id=rec.get("trace_id"),
            kind=_kind(rec),
            phase=rec.get("phase") if isinstance(rec.get("phase"), str) else None,
            attempt=attempt if isinstance(attempt, int) and not isinstance(attempt, bool) and attempt >= 1 else 1,
            history=tuple(a for a in map(Attempt.from_record, rec.get("history") or ()) if a),
        )


def _kind(rec: dict[str, Any]) -> str | None:
    """A record's failure kind: as written (schema 8), derived from its flags for an older red
    final record, None for an older record that is not red or not final."""
    schema = rec.get("schema")
    if isinstance(schema, int) and schema >= 8:  # written with its kind (null: not red, or not final)
        return str(rec["kind"]) if isinstance(rec.get("kind"), str) else None
    if rec.get("status") != "red" or rec.get("state", "finished") != RunState.FINISHED.value:
        return None
    err = rec.get("error")
    return derive_kind(
        terminated=bool(rec.get("terminated")), interrupted=bool(rec.get("interrupted")),
        timed_out=bool(rec.get("timed_out")), kernel_died=bool(rec.get("kernel_died")),
        error_type=err.get("type") if isinstance(err, dict) else None,
    ).value
