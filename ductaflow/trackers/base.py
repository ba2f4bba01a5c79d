"""The tracker adapter interface, and the handle of one tracker run."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ductaflow.store.result import TrackerBinding


@dataclass
class RunHandle:
    """One run in a tracker: its id, where to see it, and the backend's own state in ``extra``."""

    id: str
    project: str | None = None
    group: str | None = None
    url: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def binding(self, backend: str) -> TrackerBinding:
        """What the status record keeps of this run."""
        return TrackerBinding(backend, self.id, self.project, self.group, self.url)


class TrackerAdapter(ABC):
    """A tracker backend, made with the runs root (or None) once per process; it serves every run
    of that process, each through its own handle.

    ``where`` is the instance directory of the run being tracked (an adapter may keep its files
    there); ``parent`` the handle of the run this one is nested in (a build's, for its steps),
    when the same process tracks both.
    """

    name: str = ""

    @abstractmethod
    def init_run(
        self,
        *,
        project: str,
        group: str | None,
        tags: Mapping[str, str],
        config: Mapping[str, Any],
        notes: str | None,
        offline: bool,
        where: Path,
        run_name: str,
    ) -> RunHandle:
        """Start a tracker run for a flow run that starts now."""

    @abstractmethod
    def log(self, handle: RunHandle, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log metrics (numbers; other values are the adapter's to keep as text or skip)."""

    @abstractmethod
    def log_artifact(self, handle: RunHandle, name: str, path: Path) -> None:
        """Keep a file with the run."""

    def resume(self, binding: TrackerBinding, where: Path) -> RunHandle | None:
        """A handle on a run another process started for the flow run in ``where`` (to log its
        metrics live from its kernel); None when this backend cannot log to it from here."""
        return None

    def set_tags(self, handle: RunHandle, tags: Mapping[str, str]) -> None:  # noqa: B027 - optional
        """Tags known only at the end (the light); an adapter without tags may ignore them."""

    @abstractmethod
    def finish(self, handle: RunHandle, *, exit_code: int = 0) -> None:
        """End the tracker run (``exit_code`` 0: the flow ended green or orange)."""

    @abstractmethod
    def list_runs(self, *, project: str, group_prefix: str | None = None) -> Sequence[RunHandle]:
        """The runs of ``project`` (whose group starts with ``group_prefix``) this backend holds."""
