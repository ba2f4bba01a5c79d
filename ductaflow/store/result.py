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
trace, see :mod:`ductaflow.lifecycle.tracing`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Any

from ductaflow.core.deps import Dep, from_records, to_records
from ductaflow.core.lights import Status
from ductaflow.core.provenance import Provenance
from ductaflow.store.layout import artifact_path

STATUS_SCHEMA = 7


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

    @property
    def ok(self) -> bool:
        return self.status is not Status.RED

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
        rec["error"] = None if self.error is None else {f.name: getattr(self.error, f.name) for f in fields(ErrorInfo)}
        return rec

    @classmethod
    def from_record(cls, rec: dict[str, Any], execution_dir: Path | None = None) -> FlowResult:
        """Rebuild a result from a status record of any schema (``execution_dir`` overrides a moved dir)."""
        err = rec.get("error")
        folder = execution_dir or rec["execution_dir"]
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
        )
