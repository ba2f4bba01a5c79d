"""Provenance of real runs: papermill, a build's nested step and script mode, in a real git checkout."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from flowkit import git, make_project, write_flow

from ductaflow import run_notebook
from ductaflow.core.provenance import environment
from ductaflow.report.collect import collect_report
from ductaflow.store.envs import read_environment
from ductaflow.store.ledger import read as read_ledger
from ductaflow.store.records import read_status

pytestmark = pytest.mark.kernel

BUILD = """\
# %% tags=["parameters"]
config = {}

# %%
from ductaflow import step
step("flows/model.py", "model", {"rate": 4})
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A committed project run four ways: clean, after a tracked edit (forced), as a build, as a script."""
    if subprocess.run(["git", "--version"], capture_output=True, check=False).returncode != 0:
        pytest.skip("git is not installed")
    root = make_project(tmp_path_factory.mktemp("prov"))
    body = 'from ductaflow import flow_config\nconfig = flow_config(config)\nprint("rate", config.get("rate", 1))\n'
    flow = write_flow(root, "model", body, params='config = {"rate": 1}')
    (root / "builds").mkdir()
    (root / "builds" / "pair.py").write_text(BUILD)
    (root / ".gitignore").write_text("runs/\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "model")
    head = git(root, "rev-parse", "HEAD")
    clean = run_notebook(flow, {}, project_root=root, instance_name="clean")
    with (root / "pyproject.toml").open("a") as fh:  # a tracked file changes: dirty, same flow code
        fh.write("# edited\n")
    dirty = run_notebook(flow, {}, project_root=root, instance_name="dirty")
    build = run_notebook(root / "builds" / "pair.py", {}, project_root=root, instance_name="b")
    script = subprocess.run(
        [sys.executable, str(flow), "--output-dir", str(root / "runs" / "model" / "script")],
        cwd=root, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )  # fmt: skip
    assert script.returncode == 0, script.stderr
    return {"root": root, "head": head, "clean": clean, "dirty": dirty, "build": build}


def test_a_run_records_commit_branch_and_environment(project: dict[str, object]) -> None:
    clean = project["clean"]
    prov = clean.provenance  # type: ignore[attr-defined]
    assert prov is not None and prov.git is not None
    assert prov.git.commit == project["head"] and prov.git.branch == "main" and not prov.git.dirty
    env = environment()
    assert env is not None and prov.env_hash == env.hash
    assert prov.python_version == ".".join(str(n) for n in sys.version_info[:3])
    assert prov.host and prov.ductaflow_version
    stored = read_environment(project["root"] / "runs", prov.env_hash)  # type: ignore[operator]
    assert stored is not None and stored.distributions == env.distributions
    on_disk = read_status(clean.status_path)  # type: ignore[attr-defined]
    assert on_disk is not None and on_disk.provenance == prov


def test_the_dirty_flag_flips_after_a_tracked_file_changes(project: dict[str, object]) -> None:
    prov = project["dirty"].provenance  # type: ignore[attr-defined]
    assert prov.git.commit == project["head"] and prov.git.dirty and prov.git.diff_hash
    ledger = read_ledger(project["root"] / "runs")  # type: ignore[operator]
    rows = ledger[ledger["flow"] == "model"].set_index("instance")
    assert not rows.loc["clean", "git_dirty"] and rows.loc["dirty", "git_dirty"]
    assert rows.loc["dirty", "git_diff_hash"] == prov.git.diff_hash
    assert rows.loc["clean", "git_commit"] == project["head"]


def test_a_build_and_its_step_both_record_provenance(project: dict[str, object]) -> None:
    build = project["build"]
    step = read_status(build.execution_dir / "runs" / "model" / "model_status.json")  # type: ignore[attr-defined]
    assert step is not None and step.provenance is not None and build.provenance is not None  # type: ignore[attr-defined]
    assert step.provenance.git == build.provenance.git  # type: ignore[attr-defined]
    assert step.provenance.env_hash == build.provenance.env_hash  # type: ignore[attr-defined]


def test_script_mode_records_provenance_too(project: dict[str, object]) -> None:
    rec = read_status(project["root"] / "runs" / "model" / "script" / "model_status.json")  # type: ignore[operator]
    assert rec is not None and rec.mode == "script" and rec.provenance is not None
    assert rec.provenance.git is not None and rec.provenance.git.commit == project["head"]


def test_the_report_shows_each_commit_and_warns_about_mixed_code(project: dict[str, object]) -> None:
    ctx = collect_report(project["root"] / "runs")  # type: ignore[operator]
    (section,) = [s for s in ctx["sections"] if s["build"] == "model"]
    commits = {r["instance"]: r["commit"] for r in section["rows"]}
    short = str(project["head"])[:7]
    assert commits["clean"] == short and commits["dirty"] == short + "*"
    assert section["mixed_code"] and any(w.startswith("model: ") for w in ctx["provenance_warnings"])
