"""Issue 14 with real kernels: a typo'd scenario column is refused before any instance exists,
``--allow-unknown`` runs it anyway, the name column stays out of the config unless a flow knows
it, and ``ductaflow run -p flag=False`` reaches the flow as ``False``."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from flowkit import ductaflow_cmd, make_project, read_json, write_flow

from ductaflow import conduct

pytestmark = pytest.mark.kernel

WORK = """
# %%
from ductaflow import flow_config
config = flow_config(config, "config/flows/work.json")

# %%
from pathlib import Path
print("growth", config["growth_rate"], "flag", repr(config["flag"]), "nothing", repr(config["nothing"]))
Path("seen.json").write_text(__import__("json").dumps(config))
"""
BUILD = """\
# %% tags=["parameters"]
config = {}

# %%
from ductaflow import flow_config, step
config = flow_config(config, "config/builds/pipe.json")
step("flows/work.py", "work", {"growth_rate": config["growth_rate"]})
"""
WORK_DEFAULTS = {"growth_rate": 0.02, "flag": True, "nothing": "something"}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = make_project(tmp_path)
    write_flow(root, "work", WORK, config=WORK_DEFAULTS)
    (root / "builds").mkdir()
    (root / "builds" / "pipe.py").write_text(BUILD)
    (root / "config" / "builds").mkdir()
    (root / "config" / "builds" / "pipe.json").write_text(json.dumps({"growth_rate": 0.02}))
    return root


def test_conduct_refuses_a_typo_column_before_any_instance_and_allow_unknown_runs_it(project: Path) -> None:
    (project / "scenarios.csv").write_text("label,growth_rat\nfast,0.04\n")
    args = ("conduct", "scenarios.csv", "--build", "builds/pipe.py", "--instance-column", "label")
    refused = ductaflow_cmd(*args, cwd=project)
    assert refused.returncode == 2, refused.stderr
    assert "unknown scenario column 'growth_rat' (did you mean 'growth_rate'?)" in refused.stderr
    assert "--allow-unknown" in refused.stderr
    assert not (project / "runs").exists(), "an instance (or the runs root) was written before refusing"

    allowed = ductaflow_cmd(*args, "--allow-unknown", cwd=project)
    assert allowed.returncode == 0, allowed.stderr
    inst = project / "runs" / "pipe" / "fast"
    build_cfg = read_json(inst / "pipe_config.json")
    assert build_cfg["growth_rat"] == 0.04 and build_cfg["growth_rate"] == 0.02, "today's behaviour, kept"
    assert "label" not in build_cfg, "the instance column is not a parameter"
    assert read_json(inst / "runs" / "work" / "seen.json")["growth_rate"] == 0.02


def test_the_name_column_reaches_the_config_only_when_a_flow_knows_it(project: Path) -> None:
    table = pd.DataFrame({"scenario_name": ["s1"], "growth_rate": [0.03]})
    conduct(table, project / "builds" / "pipe.py", project_root=project, progress=False, executor="serial")
    assert "scenario_name" not in read_json(project / "runs" / "pipe" / "s1" / "pipe_config.json")
    defaults = {"growth_rate": 0.02, "scenario_name": "none"}
    (project / "config" / "builds" / "pipe.json").write_text(json.dumps(defaults))
    conduct(table, project / "builds" / "pipe.py", project_root=project, progress=False, executor="serial")
    recorded = read_json(project / "runs" / "pipe" / "s1" / "pipe_config.json")
    assert recorded["scenario_name"] == "s1" and recorded["_instance"] == "s1"


def test_run_p_values_reach_the_flow_typed_like_papermill(project: Path) -> None:
    proc = ductaflow_cmd(
        "run", "flows/work.py", "--instance", "typed", "-p", "flag=False", "-p", "nothing=None",
        "-r", "growth_rate", "0.5", cwd=project,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    seen = read_json(project / "runs" / "work" / "typed" / "seen.json")
    assert seen["flag"] is False and seen["nothing"] is None and seen["growth_rate"] == "0.5"
    log = (project / "runs" / "work" / "typed" / "work_execution_output.txt").read_text()
    assert "flag False nothing None" in log


def test_run_refuses_an_unknown_p_key_and_allow_unknown_runs_it(project: Path) -> None:
    refused = ductaflow_cmd("run", "flows/work.py", "-p", "growth_rat=0.1", cwd=project)
    assert refused.returncode == 2
    assert "unknown parameter 'growth_rat'" in refused.stderr and "did you mean 'growth_rate'" in refused.stderr
    assert not (project / "runs").exists()
    allowed = ductaflow_cmd("run", "flows/work.py", "-p", "growth_rat=0.1", "--allow-unknown", cwd=project)
    assert allowed.returncode == 0, allowed.stderr
    assert "config keys not known to flow 'work': growth_rat" in allowed.stderr
