"""The ``noop`` tracker: no service, no network; each run's events as JSON lines beside the run.

``<instance dir>/tracker/<run id>/events.jsonl`` holds one object per event, each with ``event``
(``init_run``, ``log``, ``log_artifact``, ``finish``) and ``at`` (UTC, ISO 8601): what any
other adapter would have been told, to check or replay. :meth:`NoopTracker.list_runs` finds them
again under a runs root.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ductaflow.core.clock import now_iso
from ductaflow.store.result import TrackerBinding
from ductaflow.trackers.base import RunHandle, TrackerAdapter

EVENTS_FILE = "events.jsonl"
TRACKER_DIR = "tracker"


class NoopTracker(TrackerAdapter):
    """Writes each run's events to ``<instance>/tracker/<run id>/events.jsonl``."""

    name = "noop"

    def __init__(self, runs_root: str | Path | None = None) -> None:
        self.runs_root = Path(runs_root) if runs_root else None

    def _write(self, handle: RunHandle, event: str, **fields: Any) -> None:
        path = Path(handle.extra["events"])
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"event": event, "at": now_iso(), **fields}, default=str, ensure_ascii=False) + "\n")

    def init_run(
        self, *, project: str, group: str | None, tags: Mapping[str, str], config: Mapping[str, Any],
        notes: str | None, offline: bool, where: Path, run_name: str,
    ) -> RunHandle:  # fmt: skip
        run_id = uuid.uuid4().hex[:16]
        events = where / TRACKER_DIR / run_id / EVENTS_FILE
        handle = RunHandle(run_id, project, group, url=events.as_uri(), extra={"events": str(events)})
        self._write(handle, "init_run", run_id=run_id, run_name=run_name, project=project, group=group,
                    tags=dict(tags), config=dict(config), notes=notes, offline=offline)  # fmt: skip
        return handle

    def resume(self, binding: TrackerBinding, where: Path) -> RunHandle | None:
        """Any process may append to the run's events file, beside the run."""
        events = where / TRACKER_DIR / binding.run_id / EVENTS_FILE
        return RunHandle(binding.run_id, binding.project, binding.group, events.as_uri(), {"events": str(events)}) \
            if events.is_file() else None

    def log(self, handle: RunHandle, metrics: Mapping[str, Any], step: int | None = None) -> None:
        self._write(handle, "log", metrics=dict(metrics), step=step)

    def log_artifact(self, handle: RunHandle, name: str, path: Path) -> None:
        self._write(handle, "log_artifact", name=name, path=str(path), size_bytes=path.stat().st_size)

    def set_tags(self, handle: RunHandle, tags: Mapping[str, str]) -> None:
        self._write(handle, "set_tags", tags=dict(tags))

    def finish(self, handle: RunHandle, *, exit_code: int = 0) -> None:
        self._write(handle, "finish", exit_code=exit_code)

    def list_runs(self, *, project: str, group_prefix: str | None = None) -> Sequence[RunHandle]:
        if self.runs_root is None:
            return []
        found = []
        for events in sorted(self.runs_root.rglob(f"{TRACKER_DIR}/*/{EVENTS_FILE}")):
            first = read_events(events)[:1]
            if not first or first[0].get("project") != project:
                continue
            group = first[0].get("group")
            if group_prefix is None or str(group or "").startswith(group_prefix):
                found.append(RunHandle(str(first[0]["run_id"]), project, group, events.as_uri(),
                                       {"events": str(events)}))  # fmt: skip
        return found


def read_events(path: str | Path) -> list[dict[str, Any]]:
    """The events of one noop run, in order (a torn last line is left out)."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out
