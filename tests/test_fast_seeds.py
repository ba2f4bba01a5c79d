"""Seeds and replicates (``ductaflow.core.seeds``, ``ductaflow.conductor.replicates``): the
derivation, instance names, fingerprints, the run budget and bad input."""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import ductaflow
from ductaflow.cli.app import main
from ductaflow.conductor.plan import plan_scenarios, plan_sweep
from ductaflow.core.fingerprint import config_hash
from ductaflow.core.seeds import derive_seed, replicate_name, run_seed
from ductaflow.errors import ScenarioError

BUILD = '# %% tags=["parameters"]\nconfig = {}\n\n# %%\nx = 1\n'
TABLE = pd.DataFrame({"scenario_name": ["a", "b"]})


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "builds").mkdir(parents=True)
    (root / "pyproject.toml").write_text("")
    (root / "builds" / "pipe.py").write_text(BUILD)
    return root


def test_the_formula_is_pinned_and_is_the_documented_one() -> None:
    assert derive_seed(0, "a", 0) == 2504032706
    assert derive_seed(0, "a", 1) == 2990304385
    assert derive_seed(7, "base", 3) == 793948037
    text = "7\x00base\x003"  # first 4 bytes, big-endian, of sha256: computed another way
    assert derive_seed(7, "base", 3) == int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
    seeds = {derive_seed(s, n, k) for s in (0, 1) for n in ("a", "b") for k in range(4)}
    assert len(seeds) == 16 and all(0 <= v < 2**32 for v in seeds)


def test_replicate_names_are_padded_to_the_width_of_n() -> None:
    assert replicate_name("x", 1, 3) == "x__r1"
    assert [replicate_name("x", k, 10) for k in (1, 10)] == ["x__r01", "x__r10"]
    assert replicate_name("x", 7, 100) == "x__r007"


def test_raising_n_across_a_padding_width_keeps_the_replicates_on_disk(project: Path) -> None:
    """N=9 made a__r1..a__r9; N=10 says a__r01..: those nine keep their instances (same config,
    same seed: up to date), only a__r10 is new, so no replicate exists twice under two names."""
    build_dir = project / "runs" / "pipe"
    for k in range(1, 10):
        (build_dir / f"a__r{k}").mkdir(parents=True)
    plan = plan_sweep(TABLE.iloc[:1], project / "builds" / "pipe.py", replicates=10, project_root=project)
    names = [p.instance for p in plan.scenarios]
    assert names == [f"a__r{k}" for k in range(1, 10)] + ["a__r10"]
    assert [p.config["_replicate"] for p in plan.scenarios] == list(range(1, 11))
    assert plan.scenarios[0].config["_seed"] == derive_seed(0, "a", 1)
    fresh = plan_scenarios(TABLE.iloc[:1], {}, replicates=10)  # nothing on disk: the padded names
    assert fresh[0].instance == "a__r01"


def test_replicates_expand_rows_with_their_own_seeds() -> None:
    plans = plan_scenarios(TABLE, {"g": 1}, replicates=2, seed=5)
    assert [p.instance for p in plans] == ["a__r1", "a__r2", "b__r1", "b__r2"]
    assert [p.row for p in plans] == [0, 0, 1, 1]
    assert plans[1].config == {"g": 1, "_instance": "a__r2", "_replicate": 2, "_seed": derive_seed(5, "a", 2)}
    plain = plan_scenarios(TABLE, {"g": 1})
    assert [p.instance for p in plain] == ["a", "b"] and "_replicate" not in plain[0].config
    assert plain[0].config["_seed"] == derive_seed(0, "a", 0)


def test_the_seed_counts_in_the_fingerprint_only_when_it_is_not_the_default() -> None:
    before = {"g": 1, "_instance": "a"}  # an instance recorded before seeds existed
    default = {**before, "_seed": derive_seed(0, "a", 0)}
    assert config_hash(default) == config_hash(before), "without replicates or a seed nothing re-runs"
    assert config_hash({**before, "_seed": derive_seed(1, "a", 0)}) != config_hash(before)
    r1 = {"g": 1, "_instance": "a__r1", "_replicate": 1, "_seed": derive_seed(0, "a", 1)}
    assert config_hash(r1) != config_hash({**r1, "_seed": derive_seed(2, "a", 1)})
    assert run_seed({"_seed": 9}, None, "x") == 9 and run_seed({}, None, "x") == derive_seed(0, "x", 0)
    assert run_seed({}, 9, "work") == derive_seed(9, "work", 0), "a step's seed comes from its build's"


def test_reproducible_seed_seeds_and_restores_both_generators() -> None:
    random.seed(1)
    np.random.seed(1)
    expected = (random.random(), np.random.rand())
    random.seed(1)
    np.random.seed(1)
    with ductaflow.reproducible_seed(42):
        inside = (random.random(), np.random.rand())
    assert (random.random(), np.random.rand()) == expected
    with ductaflow.reproducible_seed(42):
        assert (random.random(), np.random.rand()) == inside


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"replicates": 0}, "replicates must be at least 1, got 0"),
        ({"replicates": 2.0}, "replicates must be an integer"),
        ({"seed": "1"}, "seed must be an integer, got '1'"),
        ({"seed": True}, "seed must be an integer, got True"),
        ({"max_runs": 0}, "max_runs must be at least 1"),
    ],
)
def test_bad_options_are_refused_before_anything_runs(project: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        plan_sweep(TABLE, project / "builds" / "pipe.py", project_root=project, preload=(), **kwargs)
    assert not (project / "runs").exists()


def test_names_that_look_like_replicates_are_refused_with_replicates_on() -> None:
    table = pd.DataFrame({"scenario_name": ["x", "x__r1"]})
    with pytest.raises(ScenarioError, match=r"row 1 \('x__r1'\)"):
        plan_scenarios(table, {}, replicates=2)
    assert [p.instance for p in plan_scenarios(table, {})] == ["x", "x__r1"], "fine without replicates"


def test_max_runs_counts_the_builds_that_would_run(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build = project / "builds" / "pipe.py"
    with pytest.raises(ScenarioError, match=r"would run 6 build\(s\).*more than max_runs=5"):
        plan_sweep(TABLE, build, project_root=project, preload=(), replicates=3, max_runs=5)
    assert len(plan_sweep(TABLE, build, project_root=project, preload=(), replicates=3, max_runs=6).to_run) == 6
    csv = project / "s.csv"
    csv.write_text("scenario_name\na\nb\n")
    main(["conduct", str(csv), "--build", str(build), "--dry-run", "--replicates", "10", "--seed", "3"])
    out = capsys.readouterr()
    assert "dry run OK: 20 scenario(s) would run" in out.out and "a__r01" in out.err and "b__r10" in out.err
    for bad in (["--max-runs", "19", "--replicates", "10"], ["--replicates", "0"], ["--seed", "1.5"]):
        with pytest.raises(SystemExit) as info:
            main(["conduct", str(csv), "--build", str(build), "--dry-run", *bad])
        assert info.value.code == 2
    assert "more than max_runs=19" in capsys.readouterr().err
    assert not (project / "runs").exists()


def test_script_mode_seeds_from_the_recorded_config(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    (root / "flows").mkdir(parents=True)
    (root / "pyproject.toml").write_text("")
    flow = root / "flows" / "draw.py"
    flow.write_text(
        '# %% tags=["parameters"]\nconfig = {}\n\n# %%\nimport random, numpy, ductaflow\n'
        'config = ductaflow.flow_config(config)\nprint(random.random(), numpy.random.rand(), ductaflow.seed())\n'
    )
    cfg = tmp_path / "cfg.json"
    cfg.write_text('{"_seed": 5}')
    done = subprocess.run([sys.executable, str(flow), "--config", str(cfg)], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(random.Random(5).random()), str(np.random.RandomState(5).rand()), "5"]


@pytest.mark.parametrize("bad", ["7", 1.5, True, -1, 2**32, None])
def test_a_seed_the_kernel_cannot_take_exactly_is_refused_before_anything_is_written(
    project: Path, bad: object
) -> None:
    """Ignoring it would seed the kernel with another number while the recorded config shows this one."""
    flow = project / "builds" / "pipe.py"
    with pytest.raises(ductaflow.DuctaflowError, match=r"config: _seed must be an integer from 0 to 4294967295"):
        ductaflow.run_notebook(flow, {"_seed": bad}, project_root=project, instance_name="s")
    assert not (project / "runs").exists()
    for fine in (0, 2**32 - 1, np.int64(5)):
        assert run_seed({"_seed": fine}, None, "x") == fine  # in range: taken as given
        assert ductaflow.seed({"_seed": fine}) == fine
