"""The ``mlflow`` tracker (``pip install 'ductaflow[mlflow]'``): one MLflow experiment per build,
one MLflow run per flow run, the flows of a build nested under the build's run.

The tracking URI is ``MLFLOW_TRACKING_URI`` when set, else a SQLite store in
``<runs root>/.ductaflow/mlflow/mlflow.db`` with artifacts beside it (MLflow 3 keeps its plain
file store for reading only). Params are the flattened config (values cut to MLflow's 6,000
characters), metrics the numeric values the flow recorded; other recorded values become tags.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ductaflow.store.layout import RUNS_MARKER
from ductaflow.store.result import TrackerBinding
from ductaflow.trackers.base import RunHandle, TrackerAdapter

#: Where the default local store lives under the runs root.
STORE_DIR = Path(RUNS_MARKER) / "mlflow"
_PARAM_LIMIT = 6000


class MlflowTracker(TrackerAdapter):
    """Logs to MLflow through its client API (no global active run, so parallel runs never mix)."""

    name = "mlflow"

    def __init__(self, runs_root: str | Path | None = None) -> None:
        # heavy: MLflow, imported only when this tracker is chosen
        from mlflow import MlflowClient

        self.artifacts: str | None = None
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            store = (Path(runs_root) if runs_root else Path("runs")).resolve() / STORE_DIR
            store.mkdir(parents=True, exist_ok=True)
            uri = f"sqlite:///{store / 'mlflow.db'}"
            self.artifacts = (store / "artifacts").as_uri()
        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)

    def _experiment(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        try:
            return str(self.client.create_experiment(name, artifact_location=self.artifacts))
        except Exception:  # noqa: BLE001 - another worker created it first
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return str(found.experiment_id)

    def init_run(
        self, *, project: str, group: str | None, tags: Mapping[str, str], config: Mapping[str, Any],
        notes: str | None, offline: bool, where: Path, run_name: str,
    ) -> RunHandle:  # fmt: skip
        experiment = self._experiment(group or project)
        run_tags = {k: str(v) for k, v in tags.items() if k != "parent_run_id"}
        run_tags["ductaflow.instance_dir"] = str(where)
        if tags.get("parent_run_id"):
            run_tags["mlflow.parentRunId"] = str(tags["parent_run_id"])  # MLflow's own mark of a nested run
        if notes:
            run_tags["mlflow.note.content"] = notes
        run = self.client.create_run(experiment, tags=run_tags, run_name=run_name)
        run_id = str(run.info.run_id)
        for key, value in config.items():
            self.client.log_param(run_id, key[:250], str(value)[:_PARAM_LIMIT])
        url = None
        if self.uri.startswith(("http://", "https://")):
            url = f"{self.uri.rstrip('/')}/#/experiments/{experiment}/runs/{run_id}"
        return RunHandle(run_id, project, group, url, {"experiment_id": experiment})

    def resume(self, binding: TrackerBinding, where: Path) -> RunHandle | None:
        """MLflow runs are written through the store by id: a flow's kernel logs to its run too."""
        return RunHandle(binding.run_id, binding.project, binding.group, binding.url)

    def log(self, handle: RunHandle, metrics: Mapping[str, Any], step: int | None = None) -> None:
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.client.log_metric(handle.id, key, float(value), step=step or 0)
            else:
                self.client.set_tag(handle.id, f"metric.{key}", str(value))

    def log_artifact(self, handle: RunHandle, name: str, path: Path) -> None:
        self.client.log_artifact(handle.id, str(path))

    def set_tags(self, handle: RunHandle, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(handle.id, key, str(value))

    def finish(self, handle: RunHandle, *, exit_code: int = 0) -> None:
        self.client.set_terminated(handle.id, "FINISHED" if exit_code == 0 else "FAILED")

    def list_runs(self, *, project: str, group_prefix: str | None = None) -> Sequence[RunHandle]:
        experiments = [e for e in self.client.search_experiments()
                       if group_prefix is None or str(e.name).startswith(group_prefix)]  # fmt: skip
        if not experiments:
            return []
        names = {str(e.experiment_id): str(e.name) for e in experiments}
        runs = self.client.search_runs(list(names), max_results=10_000)
        return [RunHandle(str(r.info.run_id), project, names.get(str(r.info.experiment_id)), None,
                          {"run_name": r.info.run_name, "tags": dict(r.data.tags)}) for r in runs]  # fmt: skip
