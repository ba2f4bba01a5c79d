"""Plain data that crosses module and process boundaries: lights, errors, flow results.

A run is data: executing a flow always yields a :class:`FlowResult`, red or not, and the
same facts are stored on disk as ``<flow>_status.json`` so any tool can rebuild them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Any

STATUS_SCHEMA = 1


class Status(str, Enum):
    """The traffic light. Ordered so that ``max`` gives the worst."""

    GREEN = "green"
    ORANGE = "orange"
    RED = "red"

    @property
    def rank(self) -> int:
        return _RANK[self]

    @property
    def emoji(self) -> str:
        return {"green": "🟢", "orange": "🟠", "red": "🔴"}[self.value]

    @classmethod
    def worst(cls, *statuses: Status | str | None) -> Status:
        """The worst of the given lights (green when none is given)."""
        present = [cls(s) for s in statuses if s]
        return max(present, key=lambda s: s.rank, default=cls.GREEN)

    def __str__(self) -> str:  # so f-strings print "green", not "Status.GREEN"
        return self.value


_RANK = {Status.GREEN: 0, Status.ORANGE: 1, Status.RED: 2}


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
class FlowResult:
    """The outcome of one flow execution in one instance directory."""

    flow: str
    flow_path: Path
    execution_dir: Path
    status: Status
    state: str  # "finished", "running" (a record left by a crash) or "prepared"
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

    @property
    def ok(self) -> bool:
        return self.status is not Status.RED

    @property
    def notebook_path(self) -> Path:
        return self.execution_dir / f"{self.flow}.ipynb"

    @property
    def log_path(self) -> Path:
        return self.execution_dir / f"{self.flow}_execution_output.txt"

    @property
    def config_path(self) -> Path:
        return self.execution_dir / f"{self.flow}_config.json"

    @property
    def status_path(self) -> Path:
        return self.execution_dir / f"{self.flow}_status.json"

    @property
    def html_path(self) -> Path | None:
        return self.execution_dir / f"{self.flow}.html" if self.html_exported else None

    @property
    def reason(self) -> str:
        """One short phrase saying why the light is what it is."""
        if self.interrupted:
            return "interrupted"
        if self.timed_out:
            return "timed out"
        if self.kernel_died:
            return "kernel died"
        if self.error:
            return self.error.summary
        if self.warnings:
            return f"{len(self.warnings)} warning line(s)"
        return "ok"

    def to_record(self) -> dict[str, Any]:
        """The JSON-ready status record written as ``<flow>_status.json``."""
        rec = asdict(self)
        rec["schema"] = STATUS_SCHEMA
        rec["status"] = self.status.value
        rec["flow_path"] = str(self.flow_path)
        rec["execution_dir"] = str(self.execution_dir)
        rec["warnings"] = list(self.warnings)
        rec["notes"] = list(self.notes)
        rec["reasons"] = list(self.reasons)
        rec.pop("skipped")
        return rec

    @classmethod
    def from_record(cls, rec: dict[str, Any], execution_dir: Path | None = None) -> FlowResult:
        """Rebuild a result from a status record (``execution_dir`` overrides a moved dir)."""
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
        )
