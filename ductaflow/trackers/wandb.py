"""The ``wandb`` tracker (``pip install 'ductaflow[wandb]'``): one Weights & Biases run per flow run,
grouped by build.

With ``[tool.ductaflow] tracker_offline = true`` runs are made offline, in the instance folder
(``<instance>/wandb/offline-run-<time>-<run id>/``), so each lands at a predictable path beside
the run it records; ``ductaflow sync-offline`` uploads them later, and a synced run keeps its id.
W&B's console capture is off: the flow's output stays ductaflow's to record.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ductaflow.trackers.base import RunHandle, TrackerAdapter

#: What ductaflow writes beside each offline run, so that runs can be listed without W&B's service.
SIDECAR = "ductaflow-run.json"
_TAG_LIMIT = 64  # W&B refuses longer tags


def offline_runs(runs_root: str | Path) -> list[Path]:
    """Every offline W&B run folder under ``runs_root``, in path order."""
    return sorted(p for p in Path(runs_root).rglob("wandb/offline-run-*") if p.is_dir())


class WandbTracker(TrackerAdapter):
    """Logs to W&B through ``wandb.init`` (one run object per flow run; several may be open at once)."""

    name = "wandb"

    def __init__(self, runs_root: str | Path | None = None) -> None:
        import wandb  # heavy: W&B, imported only when this tracker is chosen

        self.wandb = wandb
        self.runs_root = Path(runs_root) if runs_root else None

    def init_run(
        self, *, project: str, group: str | None, tags: Mapping[str, str], config: Mapping[str, Any],
        notes: str | None, offline: bool, where: Path, run_name: str,
    ) -> RunHandle:  # fmt: skip
        run_id = uuid.uuid4().hex[:12]
        labels = [f"{k}:{v}"[:_TAG_LIMIT] for k, v in tags.items() if v and k != "parent_run_id"]
        run = self.wandb.init(
            mode="offline" if offline else "online", dir=str(where), project=project, group=group,
            name=run_name, id=run_id, config=dict(config), tags=labels, notes=notes, reinit="create_new",
            settings=self.wandb.Settings(silent=True, console="off"),
        )  # fmt: skip
        folder = Path(run.dir).parent  # .../wandb/<offline-|>run-<time>-<id>
        side = {"run_id": run_id, "project": project, "group": group, "run_name": run_name, "offline": offline}
        (folder / SIDECAR).write_text(json.dumps(side), encoding="utf-8")
        url = run.url or folder.as_uri()
        return RunHandle(run_id, project, group, url, {"run": run, "folder": str(folder)})

    def log(self, handle: RunHandle, metrics: Mapping[str, Any], step: int | None = None) -> None:
        run = handle.extra["run"]
        numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if numbers:
            run.log(numbers, step=step)
        for key, value in metrics.items():
            if key not in numbers:
                run.summary[key] = value

    def log_artifact(self, handle: RunHandle, name: str, path: Path) -> None:
        handle.extra["run"].save(str(path), base_path=str(path.parent), policy="now")

    def set_tags(self, handle: RunHandle, tags: Mapping[str, str]) -> None:
        run = handle.extra["run"]
        for key, value in tags.items():
            run.summary[key] = value

    def finish(self, handle: RunHandle, *, exit_code: int = 0) -> None:
        handle.extra["run"].finish(exit_code=exit_code)

    def list_runs(self, *, project: str, group_prefix: str | None = None) -> Sequence[RunHandle]:
        """The offline runs under the runs root (online ones are W&B's to list)."""
        found = []
        for folder in offline_runs(self.runs_root) if self.runs_root else []:
            try:
                side = json.loads((folder / SIDECAR).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            group = side.get("group")
            if side.get("project") == project and (group_prefix is None or str(group or "").startswith(group_prefix)):
                found.append(RunHandle(str(side["run_id"]), project, group, folder.as_uri(), {"folder": str(folder)}))
        return found
