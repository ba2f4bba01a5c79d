"""Replicates and seeds end to end: a small conduct with real kernels, checked several ways."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from ductaflow import conduct
from ductaflow.core.seeds import derive_seed

pytestmark = pytest.mark.kernel

DRAW = """
import json, random, numpy, ductaflow
json.dump({"first": first, "np": float(numpy.random.rand()), "seed": ductaflow.seed(),
           "_seed": config.get("_seed")}, open("values.json", "w"))
"""
# The first cell draws before the parameters cell: the kernel is seeded before cell one.
BUILD = '# %%\nimport random\nfirst = random.random()\n\n# %% tags=["parameters"]\nconfig = {}\n\n# %%\n' + DRAW + (
    '\n# %%\nductaflow.step("flows/work.py", "work", {})\n'
)
FLOW = '# %%\nimport random\nfirst = random.random()\n\n# %% tags=["parameters"]\nconfig = {}\n\n# %%\n' + DRAW


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two scenarios x 2 replicates, then the same forced, then 3 replicates."""
    root = tmp_path_factory.mktemp("replicates") / "proj"
    (root / "builds").mkdir(parents=True)
    (root / "flows").mkdir()
    (root / "pyproject.toml").write_text("")
    (root / "builds" / "pipe.py").write_text(BUILD)
    (root / "flows" / "work.py").write_text(FLOW)
    table = pd.DataFrame({"scenario_name": ["a", "b"]})
    common: dict[str, Any] = {"project_root": root, "progress": False, "seed": 11, "preload": ()}
    first = conduct(table, "builds/pipe.py", replicates=2, **common)
    values = _values(root)
    forced = conduct(table, "builds/pipe.py", replicates=2, force=True, **common)
    again = _values(root)
    more = conduct(table, "builds/pipe.py", replicates=3, **common)
    return {"root": root, "first": first, "values": values, "forced": forced, "again": again, "more": more}


def _values(root: Path) -> dict[str, dict[str, Any]]:
    """What each build (``a__r1``) and its step (``a__r1/work``) drew, by instance."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted((root / "runs" / "pipe").glob("*/values.json")):
        out[path.parent.name] = json.loads(path.read_text())
        out[f"{path.parent.name}/work"] = json.loads(next(path.parent.glob("runs/work/values.json")).read_text())
    return out


def test_each_replicate_gets_its_derived_seed_before_cell_one(sweep: dict[str, Any]) -> None:
    assert list(sweep["first"]["instance"]) == ["a__r1", "a__r2", "b__r1", "b__r2"]
    assert set(sweep["first"]["status"]) == {"green"}
    values = sweep["values"]
    for name, k in (("a", 1), ("a", 2), ("b", 1), ("b", 2)):
        build = values[f"{name}__r{k}"]
        expected = derive_seed(11, name, k)
        assert build["seed"] == build["_seed"] == expected
        config = json.loads((sweep["root"] / "runs" / "pipe" / f"{name}__r{k}" / "pipe_config.json").read_text())
        assert config["_seed"] == expected and config["_replicate"] == k
        assert build["first"] == random.Random(expected).random()
        assert build["np"] == np.random.RandomState(expected).rand()
        step = values[f"{name}__r{k}/work"]
        assert step["seed"] == step["_seed"] == derive_seed(expected, "work", 0), "a step's seed comes from its build's"
        assert step["first"] == random.Random(step["seed"]).random()
    draws = [v["first"] for v in values.values()]
    assert len(set(draws)) == len(draws) == 8, "replicates, scenarios and steps all draw differently"


def test_a_forced_rerun_draws_the_same_values(sweep: dict[str, Any]) -> None:
    assert sweep["again"] == sweep["values"] and set(sweep["forced"]["state"]) == {"done"}


def test_raising_n_runs_only_the_new_replicates(sweep: dict[str, Any]) -> None:
    states = dict(zip(sweep["more"]["instance"], sweep["more"]["state"], strict=True))
    assert states == {"a__r1": "skipped", "a__r2": "skipped", "a__r3": "done",
                      "b__r1": "skipped", "b__r2": "skipped", "b__r3": "done"}  # fmt: skip


def test_seeds_are_the_same_in_another_process() -> None:
    code = "from ductaflow.core.seeds import derive_seed; print(derive_seed(11, 'a', 2), derive_seed(0, 'b', 0))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.split() == [str(derive_seed(11, "a", 2)), str(derive_seed(0, "b", 0))]
