"""Scenario planning (``ductaflow.conductor.plan``): grids, tables, and errors that name rows and columns."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ductaflow.conductor.plan import plan_scenarios, slug
from ductaflow.conductor.tables import expand_grid, load_scenarios
from ductaflow.core.seeds import derive_seed
from ductaflow.errors import ScenarioError


# ---------------------------------------------------------------- expand_grid
def test_expand_grid_is_every_combination_in_a_stable_order() -> None:
    grid = expand_grid(growth=[0.01, 0.02], city=["a", "b", "c"])
    assert list(grid.columns) == ["growth", "city"]
    assert grid.to_dict("records") == [
        {"growth": g, "city": c} for g in (0.01, 0.02) for c in ("a", "b", "c")
    ]  # fmt: skip
    assert list(grid.index) == list(range(6))


def test_a_dataframe_keeps_linked_parameters_together() -> None:
    linked = pd.DataFrame({"model": ["m1", "m2"], "iters": [10, 20]}, index=[7, 9])
    grid = expand_grid(linked, seed=[1, 2])
    assert grid.to_dict("records") == [
        {"model": "m1", "iters": 10, "seed": 1}, {"model": "m1", "iters": 10, "seed": 2},
        {"model": "m2", "iters": 20, "seed": 1}, {"model": "m2", "iters": 20, "seed": 2},
    ]  # fmt: skip
    assert len(expand_grid(pairs=linked)) == 2
    assert len(expand_grid(seed=range(3), flag=(True, False))) == 6


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((), {}, "needs at least one dimension"),
        ((), {"city": "abc"}, "dimension 'city' must be a list of values, got 'abc'"),
        ((), {"n": 3}, "dimension 'n' must be a list of values, got 3"),
        ((pd.DataFrame({"a": [1]}),), {"a": [2]}, r"column\(s\) \['a'\] given twice"),
    ],
)
def test_expand_grid_errors(args: tuple, kwargs: dict, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        expand_grid(*args, **kwargs)


# ---------------------------------------------------------------- plan_scenarios: names and configs
def test_names_come_from_scenario_name_and_the_row_goes_over_the_base_config() -> None:
    table = pd.DataFrame({"scenario_name": ["base", "high"], "growth": [0.01, 0.05], "model.iters": [10, 20]})
    base = {"growth": 0.0, "model": {"iters": 1, "tol": 1e-6}, "keep": True}
    plans = plan_scenarios(table, base)
    assert [p.instance for p in plans] == ["base", "high"] and [p.row for p in plans] == [0, 1]
    assert plans[1].config == {
        "growth": 0.05, "model": {"iters": 20, "tol": 1e-6}, "keep": True, "_instance": "high",
        "_seed": derive_seed(0, "high"),
    }  # fmt: skip
    assert "scenario_name" not in plans[0].config, "the name is not a parameter"
    assert plans[0].values == {"scenario_name": "base", "growth": 0.01, "model.iters": 10}
    assert base == {"growth": 0.0, "model": {"iters": 1, "tol": 1e-6}, "keep": True}, "the base config was changed"
    assert type(plans[0].config["model"]["iters"]) is int  # numpy scalars became JSON types


def test_an_instance_column_or_else_a_slug_names_the_rows() -> None:
    table = pd.DataFrame({"label": ["x1", "x2"], "g": [1, 2]})
    assert [p.instance for p in plan_scenarios(table, instance_column="label")] == ["x1", "x2"]
    slugged = plan_scenarios(pd.DataFrame({"g": [0.5, 1.5], "city": ["New York", "a/b"]}))
    names = [p.instance for p in slugged]
    assert re.fullmatch(r"0\.5_New-York-[0-9a-f]{6}", names[0]), names
    assert re.fullmatch(r"1\.5_a-b-[0-9a-f]{6}", names[1]), names
    assert names == [p.instance for p in plan_scenarios(pd.DataFrame({"g": [0.5, 1.5], "city": ["New York", "a/b"]}))]
    assert slug({"a": 1}) != slug({"a": 2}) and slug({"a": "x y"}) != slug({"a": "x-y"})  # the hash tells them apart
    assert slug({"a": "///"}).startswith("x-")


def test_integer_names_are_text() -> None:
    plans = plan_scenarios(pd.DataFrame({"scenario_name": [2024, 2025], "g": [1, 2]}))
    assert [p.instance for p in plans] == ["2024", "2025"]


# ---------------------------------------------------------------- plan_scenarios: errors name the place
@pytest.mark.parametrize(
    ("table", "kwargs", "message"),
    [
        (pd.DataFrame({"g": []}), {}, "the scenario table is empty"),
        (pd.DataFrame([[1, 2]]), {}, r"column names must be text; found \[0, 1\] \(give the table a header row\)"),
        (pd.DataFrame({"status": [1]}), {}, r"column\(s\) \['status'\] clash with names ductaflow uses"),
        (pd.DataFrame({"_secret": [1]}), {}, r"column\(s\) \['_secret'\] clash"),
        (pd.DataFrame({"g": [1]}), {"instance_column": "label"}, "instance_column 'label' is not a column"),
        (pd.DataFrame({"scenario_name": ["a"], "instance": ["b"]}), {},
         "scenario column 'instance' would be overwritten by the instance names"),
        (pd.DataFrame({"max-iter": [1]}), {}, r"scenario column 'max-iter' is not a parameter name: 'max-iter'"),
        (pd.DataFrame({"class": [1]}), {}, r"scenario column 'class' is not a parameter name"),
        (pd.DataFrame({"a..b": [1]}), {}, r"scenario column 'a..b' has an empty part between dots"),
        (pd.DataFrame({"model": [1], "model.iters": [2]}), {},
         r"scenario columns 'model' and 'model.iters' both set 'model'"),
    ],
)  # fmt: skip
def test_table_level_problems_name_the_column(table: pd.DataFrame, kwargs: dict, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        plan_scenarios(table, **kwargs)


def test_every_row_problem_is_named_by_row_and_column_in_one_error() -> None:
    table = pd.DataFrame({
        "scenario_name": ["ok", "B", "b", "bad/name", None, "inf"],
        "g": [0.1, np.nan, 0.3, 0.4, 0.5, float("inf")],
    })  # fmt: skip
    with pytest.raises(ScenarioError) as info:
        plan_scenarios(table)
    text = str(info.value)
    assert text.startswith("scenario table has 5 problem(s):")
    assert "row 1, column 'g' is empty (nan): every row needs a value" in text
    assert "rows 1 and 2 both name instance 'b'" in text  # case-insensitive file systems
    assert "instance name of row 3 'bad/name' must be a single directory name" in text
    assert "row 4, column 'scenario_name' is empty (" in text  # None (nan in a pandas string column)
    assert "row 5, column 'g' is inf; JSON cannot hold NaN or infinity" in text
    assert "row 0" not in text


def test_more_than_twenty_problems_are_cut_with_a_count() -> None:
    table = pd.DataFrame({"scenario_name": [f"s{i}" for i in range(25)], "g": [None] * 25}, dtype=object)
    with pytest.raises(ScenarioError) as info:
        plan_scenarios(table)
    text = str(info.value)
    assert "has 25 problem(s)" in text and "... and 5 more" in text
    assert "row 19, column 'g'" in text and "row 20, column 'g'" not in text


# ---------------------------------------------------------------- load_scenarios
def test_load_scenarios_reads_csv_and_parquet_and_names_bad_files(tmp_path: Path) -> None:
    frame = pd.DataFrame({"scenario_name": ["a"], "g": [1.5]})
    assert load_scenarios(frame) is frame
    frame.to_csv(tmp_path / "s.csv", index=False)
    frame.to_parquet(tmp_path / "s.parquet")
    pd.testing.assert_frame_equal(load_scenarios(tmp_path / "s.csv"), frame)
    pd.testing.assert_frame_equal(load_scenarios(str(tmp_path / "s.parquet")), frame)
    (tmp_path / "dup.csv").write_text("a,b,a\n1,2,3\n", encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"column\(s\) \['a'\] appear more than once in the header"):
        load_scenarios(tmp_path / "dup.csv")
    with pytest.raises(ScenarioError, match="scenario table not found"):
        load_scenarios(tmp_path / "none.csv")
    (tmp_path / "s.xlsx").write_text("x")
    with pytest.raises(ScenarioError, match=r"must be \.csv or \.parquet"):
        load_scenarios(tmp_path / "s.xlsx")
    (tmp_path / "broken.parquet").write_text("not parquet")
    with pytest.raises(ScenarioError, match="cannot read scenario table"):
        load_scenarios(tmp_path / "broken.parquet")
