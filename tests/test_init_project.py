"""A project made by ``ductaflow init`` runs green as it is: its ``python conductor.py``, run as a
user runs it (a subprocess in the new project), makes every scenario green, writes nothing
outside the project, and a second run is a no-op: every scenario up to date."""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from ductaflow.scaffold import init_project

pytestmark = pytest.mark.kernel

SCENARIOS = ("base", "higher_mean", "noisier")
FLOWS = ("make_data", "summarise")


def _env() -> dict[str, str]:
    """The environment for the conductor, without a project root or setting inherited from elsewhere."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUCTAFLOW_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _conduct(project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "conductor.py"],
        cwd=project,
        env=_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=240,
    )


def _sources(project: Path) -> dict[str, str]:
    """Every file of the project outside runs/ -> the sha256 of its bytes."""
    return {
        p.relative_to(project).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in project.rglob("*")
        if p.is_file() and p.relative_to(project).parts[0] != "runs"
    }


def _status(folder: Path, flow: str) -> dict:
    return json.loads((folder / f"{flow}_status.json").read_text(encoding="utf-8"))


def _records(project: Path) -> dict[str, dict]:
    """``scenario/flow`` -> the status record, for the build and both of its flows in every scenario."""
    out = {}
    for name in SCENARIOS:
        instance = project / "runs" / "pipeline" / name
        out[f"{name}/pipeline"] = _status(instance, "pipeline")
        for flow in FLOWS:
            out[f"{name}/{flow}"] = _status(instance / "runs" / flow, flow)
    return out


def test_a_new_project_conducts_green_and_then_is_up_to_date(tmp_path: Path) -> None:
    project = tmp_path / "new project"  # a space in the path, on purpose
    init_project(project)
    sources = _sources(project)

    first = _conduct(project)
    assert first.returncode == 0, f"{first.stdout}\n{first.stderr}"
    assert [p.name for p in tmp_path.iterdir()] == ["new project"], "something was written outside the project"
    assert _sources(project) == sources, "the run changed or added a file outside runs/"
    records = _records(project)
    for where, rec in records.items():
        assert (rec["status"], rec["state"], rec["warnings"], rec["error"]) == ("green", "finished", [], None), where
    state = json.loads((project / "runs" / ".ductaflow" / "conductor" / "pipeline.json").read_text(encoding="utf-8"))
    assert [(s["instance"], s["state"], s["status"]) for s in state["scenarios"]] == [
        (name, "done", "green") for name in SCENARIOS
    ]
    report = (project / "runs" / "conductor_status_report.html").read_text(encoding="utf-8")
    lights = re.findall(r'<details class="scn l-(\w+)"[^>]*data-instance="([^"]+)"', report)
    assert sorted((html.unescape(n), light) for light, n in lights) == [(n, "green") for n in sorted(SCENARIOS)]

    # Each row reached its flows: same seed, mean 2 higher, so every value is exactly 2 higher.
    results = pd.read_parquet(project / "runs" / "pipeline" / "results.parquet").set_index("instance")
    assert results.loc["higher_mean", "sample_mean"] - results.loc["base", "sample_mean"] == pytest.approx(2.0)
    assert results.loc["noisier", "sample_std"] > 2 * results.loc["base", "sample_std"]
    for name in SCENARIOS:
        assert re.search(rf"^\s*{name}\s+green\s", first.stdout, re.M), first.stdout

    second = _conduct(project)
    assert second.returncode == 0, f"{second.stdout}\n{second.stderr}"
    assert "3 scenario(s) up to date" in second.stdout + second.stderr
    # conduct() called from Python (the scaffold's conductor.py) says where the report is
    report_path = project / "runs" / "conductor_status_report.html"
    assert f"live report: {report_path}" in first.stdout + first.stderr, first.stderr
    assert f"nothing to run for pipeline; report: {report_path}" in second.stdout + second.stderr
    state = json.loads((project / "runs" / ".ductaflow" / "conductor" / "pipeline.json").read_text(encoding="utf-8"))
    assert [s["state"] for s in state["scenarios"]] == ["skipped"] * 3
    assert _records(project) == records, "a flow ran again"
    assert [p.name for p in tmp_path.iterdir()] == ["new project"]
