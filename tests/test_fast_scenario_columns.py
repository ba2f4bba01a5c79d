"""Scenario columns and ``-p`` keys must be parameters some flow knows (issue 14), and ``-p``
values parse like papermill's. Pure planning and command parsing: no kernel starts."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from ductaflow.cli import _parse_override, main
from ductaflow.conductor.plan import plan_sweep
from ductaflow.conductor.sweep import conduct
from ductaflow.core.deps import Dep
from ductaflow.core.lights import Status
from ductaflow.errors import ConfigError, ScenarioError
from ductaflow.store.records import write_status
from ductaflow.store.result import FlowResult

FLOW = '# %% tags=["parameters"]\nconfig = {}\n\n# %%\nx = 1\n'
BUILD = (
    '# %% tags=["parameters"]\nconfig = {}\n\n# %%\nfrom ductaflow import flow_config, step\n'
    'config = flow_config(config, "config/builds/pipe.json")\nstep("flows/work.py", "work", {})\n'
)
#: A build whose flow path is computed: only its records say which flow it ran.
DYNAMIC_BUILD = (
    '# %% tags=["parameters"]\nconfig = {}\n\n# %%\nfrom ductaflow import flow_config, step\n'
    'config = flow_config(config, "config/builds/pipe.json")\nstep(f"flows/{config[\'which\']}.py", "w", {})\n'
)
BUILD_DEFAULTS: dict[str, Any] = {
    "growth_rate": 0.02,
    "which": "work",
    "prepare_zones": {"area_km": 30.0, "trips_per_person": 1.2},
    "options": None,
    "extra": {},
}
WORK_DEFAULTS = {"seed": 7, "horizon_years": 10}


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    _write(root / "pyproject.toml", "")
    _write(root / "flows" / "work.py", FLOW)
    _write(root / "builds" / "pipe.py", BUILD)
    _write(root / "config" / "builds" / "pipe.json", json.dumps(BUILD_DEFAULTS))
    _write(root / "config" / "flows" / "work.json", json.dumps(WORK_DEFAULTS))
    return root


def _plan(project: Path, columns: dict[str, list[Any]], **kw: Any):  # type: ignore[no-untyped-def]
    return plan_sweep(pd.DataFrame(columns), project / "builds" / "pipe.py", project_root=project, preload=(), **kw)


# ---------------------------------------------------------------- scenario columns
def test_a_typo_column_is_refused_by_planning_with_the_nearest_name(project: Path) -> None:
    with pytest.raises(ScenarioError) as info:
        _plan(project, {"scenario_name": ["a", "b"], "growth_rat": [0.01, 0.03]})
    message = str(info.value)
    assert "unknown scenario column 'growth_rat' (did you mean 'growth_rate'?)" in message
    assert "allow_unknown" in message
    assert not (project / "runs").exists(), "planning wrote something before refusing"
    # keys of the build's default config and of a flow it names (work.json's seed) are accepted
    plan = _plan(project, {"growth_rate": [0.01], "seed": [3], "prepare_zones.area_km": [12.0]})
    config = plan.scenarios[0].config
    assert config["growth_rate"] == 0.01 and config["seed"] == 3
    assert config["prepare_zones"] == {"area_km": 12.0, "trips_per_person": 1.2}


def test_every_unknown_column_is_named_at_once_nested_ones_by_their_path(project: Path) -> None:
    with pytest.raises(ScenarioError) as info:
        _plan(project, {"name": ["x"], "prepare_zones.area_kmm": [1.0], "growth_rate.low": [1], "seed": [1]})
    message = str(info.value)
    assert "unknown scenario column 'prepare_zones.area_kmm' (did you mean 'prepare_zones.area_km'?)" in message
    assert "unknown scenario column 'name'" in message
    assert "'growth_rate.low'" in message, "a key inside a number is not a parameter"
    assert "'seed'" not in message.replace("did you mean 'seed'", "")


def test_below_a_null_or_empty_dict_default_any_key_is_accepted_below_a_dict_only_its_keys(project: Path) -> None:
    with pytest.raises(ScenarioError, match="'prepare_zones.trips'"):
        _plan(project, {"options.level": [2], "prepare_zones.trips": [1.0]})
    plan = _plan(project, {"options.level": [2], "extra.anything.deep": ["x"]})
    assert plan.scenarios[0].config["options"] == {"level": 2}
    assert plan.scenarios[0].config["extra"] == {"anything": {"deep": "x"}}


def test_the_name_column_is_not_checked_and_not_a_parameter_unless_a_flow_knows_it(project: Path) -> None:
    plan = _plan(project, {"label": ["a", "b"], "growth_rate": [0.1, 0.2]}, instance_column="label")
    assert [p.instance for p in plan.scenarios] == ["a", "b"]
    assert "label" not in plan.scenarios[0].config
    defaults = {**BUILD_DEFAULTS, "scenario_name": "default"}
    _write(project / "config" / "builds" / "pipe.json", json.dumps(defaults))
    plan = _plan(project, {"scenario_name": ["a", "b"], "growth_rate": [0.1, 0.2]})
    assert plan.scenarios[1].config["scenario_name"] == "b", "a key the build knows reaches it"
    assert plan.scenarios[1].config["_instance"] == "b"


def test_base_config_keys_are_checked_too(project: Path) -> None:
    with pytest.raises(ScenarioError, match=r"unknown base_config key 'seeed' \(did you mean 'seed'\?\)"):
        _plan(project, {"growth_rate": [0.1]}, base_config={"seeed": 1, "prepare_zones": {"area_km": 2.0}})
    with pytest.raises(ScenarioError, match=r"'prepare_zones.area'"):
        _plan(project, {"growth_rate": [0.1]}, base_config={"prepare_zones": {"area": 2.0}})
    assert _plan(project, {"growth_rate": [0.1]}, base_config={"seed": 1}).scenarios[0].config["seed"] == 1


def test_flows_an_earlier_build_instance_recorded_count_as_known(project: Path) -> None:
    _write(project / "builds" / "pipe.py", DYNAMIC_BUILD)
    _write(project / "flows" / "other.py", FLOW)
    _write(project / "config" / "flows" / "other.json", json.dumps({"iterations": 5}))
    with pytest.raises(ScenarioError, match="'iterations'"):
        _plan(project, {"which": ["other"], "iterations": [9]})
    inst = project / "runs" / "pipe" / "old"
    inst.mkdir(parents=True)
    write_status(
        FlowResult(
            "pipe", project / "builds" / "pipe.py", inst, Status.GREEN, "finished",
            deps=(Dep("flow", "flows/other.py", "d"),),
        )
    )  # fmt: skip
    plan = _plan(project, {"which": ["other"], "iterations": [9]})
    assert plan.scenarios[0].config["iterations"] == 9


def test_with_no_source_of_names_nothing_is_checked_and_a_log_line_says_so(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _write(project / "builds" / "bare.py", '# %% tags=["parameters"]\nconfig = {}\n\n# %%\nx = 1\n')
    table = pd.DataFrame({"anything": [1]})
    with caplog.at_level(logging.INFO, logger="ductaflow"):
        plan = plan_sweep(table, project / "builds" / "bare.py", project_root=project, preload=())
    assert plan.scenarios[0].config["anything"] == 1
    assert any("not checked" in r.getMessage() for r in caplog.records), caplog.text


def test_allow_unknown_keeps_the_column_and_logs_it(project: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ductaflow"):
        plan = _plan(project, {"growth_rat": [0.03]}, allow_unknown=True)
    assert plan.scenarios[0].config["growth_rat"] == 0.03
    assert any("growth_rat" in r.getMessage() for r in caplog.records), caplog.text


@pytest.mark.parametrize("mode", [{"dry_run": True}, {"explain": True}])
def test_dry_run_and_explain_refuse_the_same_way(project: Path, mode: dict[str, bool]) -> None:
    table = pd.DataFrame({"growth_rat": [0.03]})
    with pytest.raises(ScenarioError, match="did you mean 'growth_rate'"):
        conduct(table, project / "builds" / "pipe.py", project_root=project, progress=False, **mode)
    assert not (project / "runs").exists()
    out = conduct(table, project / "builds" / "pipe.py", project_root=project, progress=False,
                  allow_unknown=True, **mode)  # fmt: skip
    assert len(out) == 1


def test_conduct_command_dry_run_refuses_and_allow_unknown_opts_out(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = project / "scenarios.csv"
    csv.write_text("scenario_name,growth_rat\nbase,0.02\n")
    args = ["conduct", str(csv), "--build", str(project / "builds" / "pipe.py"), "--dry-run"]
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    assert "did you mean 'growth_rate'" in capsys.readouterr().err
    assert not (project / "runs").exists()
    main([*args, "--allow-unknown"])
    assert "dry run OK: 1 scenario(s) would run" in capsys.readouterr().out


# ---------------------------------------------------------------- ductaflow run -p
def test_run_refuses_an_unknown_p_key_before_writing_anything(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flow = str(project / "flows" / "work.py")
    with pytest.raises(SystemExit) as info:
        main(["run", flow, "--no-execute", "-p", "sed=3"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "unknown parameter 'sed'" in err and "did you mean 'seed'" in err and "--allow-unknown" in err
    assert not (project / "runs").exists()
    with pytest.raises(SystemExit) as info:
        main(["run", flow, "--no-execute", "-r", "sead", "x"])
    assert info.value.code == 2, "-r keys are checked too"
    main(["run", flow, "--no-execute", "--allow-unknown", "-p", "sed=3"])
    recorded = json.loads((project / "runs" / "work" / "default" / "work_config.json").read_text())
    assert recorded["sed"] == 3 and recorded["seed"] == 7


PAPERMILL_VALUES: list[tuple[str, Any]] = [
        ("flag=False", False),
        ("flag=True", True),
        ("flag=false", False),
        ("flag=true", True),
        ("x=None", None),
        ("x=null", None),
        ("n=3", 3),
        ("n=-12", -12),
        ("f=1.5", 1.5),
        ("f=1e-6", 1e-6),
        ("l=[1, 2, \"a\"]", [1, 2, "a"]),
        ('o={"k": [true, null]}', {"k": [True, None]}),
        ("s=abc", "abc"),
        ("s=TRUE", "TRUE"),
        ("s=hello world", "hello world"),
        ("s=", ""),
        ("s=a=b", "a=b"),
]


def test_p_values_parse_like_papermill() -> None:
    for item, value in PAPERMILL_VALUES:
        key = item.split("=", 1)[0]
        parsed = _parse_override(item)
        assert parsed == {key: value} and type(parsed[key]) is type(value), item


def test_p_keeps_nested_keys_and_refuses_broken_json_and_bad_keys() -> None:
    assert _parse_override("a.b=False") == {"a": {"b": False}}
    with pytest.raises(ConfigError, match="-r"):
        _parse_override("l=[1, 2")
    for bad in ("novalue", "=1", "a..b=1"):
        with pytest.raises(ConfigError):
            _parse_override(bad)


def test_raw_values_and_help_examples(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flow = str(project / "flows" / "work.py")
    main(["run", flow, "--no-execute", "--instance", "raw", "-p", "seed=None", "-r", "horizon_years", "010"])
    recorded = json.loads((project / "runs" / "work" / "raw" / "work_config.json").read_text())
    assert recorded["seed"] is None and recorded["horizon_years"] == "010"
    capsys.readouterr()
    main(["run", "--help"])
    text = capsys.readouterr().out
    assert "-r, --raw" in text and "flag=False" in text and "--allow-unknown" in text
