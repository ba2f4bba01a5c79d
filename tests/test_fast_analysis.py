"""``ductaflow analyze`` and ``ductaflow.analysis``: numbers checked against pandas by hand (no kernel).

The results table is written by its owner (``store/results.write_results``) and the ledger by
``store/ledger.append``, as the conductor writes them.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from ductaflow import analysis
from ductaflow.analysis.table import Table
from ductaflow.cli import cli, main
from ductaflow.errors import AnalysisError
from ductaflow.store.ledger import append
from ductaflow.store.results import write_results

GRID = list(itertools.product([0.01, 0.02, 0.04], [0.1, 0.2]))


def _length(g: float, c: float, k: int) -> float:
    return 10 + 50 * g - 20 * c + 0.1 * k  # k: the replicate's noise


def _trips(g: float, c: float) -> float:
    return 1000 * (1 + g) - 100 * c


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """Six scenarios of a grid, three replicates each, one red replicate; and their ledger rows."""
    runs = tmp_path / "runs"
    (runs / ".ductaflow").mkdir(parents=True)
    rows, ledger = [], []
    for g, c in GRID:
        name = f"g{g}_c{c}"
        for k in (1, 2, 3):
            red = name == "g0.04_c0.2" and k == 3
            inst = f"{name}__r{k}"
            rows.append({
                "scenario_name": name, "growth": g, "cost": c, "instance": inst, "status": "red" if red else "green",
                "state": "done", "duration": 1.0 + k, "instance_dir": str(runs / "m" / inst), "error": None,
                "worst_flow": None, "sweep": "s1", "scenario": name, "replicate": k,
                "length": np.nan if red else _length(g, c, k), "trips": np.nan if red else _trips(g, c),
            })  # fmt: skip
            for flow, dur, mem in (("m", 3.0 + k, 100.0), ("prep", 1.0 * k, 50.0 + 10 * g * 100)):
                rel = f"m/{inst}" if flow == "m" else f"m/{inst}/runs/{flow}"
                ledger.append({"kind": "build" if flow == "m" else "flow", "event": "run", "flow": flow, "build": "m",
                               "instance": inst, "instance_dir": rel, "status": "green", "duration": dur,
                               "peak_rss_mb": mem, "started": f"2026-01-01T00:00:{len(ledger):02d}",
                               "scenario": {"growth": g, "cost": c}})  # fmt: skip
    write_results(pd.DataFrame(rows), runs / "m", ["length", "trips"])
    append(runs, ledger)
    return runs


@pytest.fixture
def table(runs: Path) -> Table:
    return analysis.load(runs)


def test_load_names_metrics_and_parameters(table: Table) -> None:
    assert table.build == "m" and table.metrics == ("length", "trips")
    assert table.params == ("growth", "cost")  # scenario_name names the rows: not a parameter


def test_compare_matches_pandas(table: Table) -> None:
    out = analysis.compare(table, "g0.02_c0.1").set_index("scenario")
    means = table.frame.groupby("scenario")[["length", "trips"]].mean()
    base = means.loc["g0.02_c0.1"]
    for name in means.index:
        for m in ("length", "trips"):
            assert out.loc[name, m] == pytest.approx(means.loc[name, m])
            assert out.loc[name, f"{m}_delta"] == pytest.approx(means.loc[name, m] - base[m])
            assert out.loc[name, f"{m}_pct"] == pytest.approx((means.loc[name, m] / base[m] - 1) * 100)
    assert out.loc["g0.04_c0.2", "n"] == 3 and out.loc["g0.02_c0.1", "length_delta"] == 0
    by_instance = analysis.compare(table, "g0.02_c0.1__r2")  # an instance names its scenario
    assert by_instance.equals(analysis.compare(table, "g0.02_c0.1"))


def test_stability_matches_pandas(table: Table) -> None:
    out = analysis.stability(table, metrics=["length"]).set_index("scenario")
    grouped = table.frame.groupby("scenario")["length"]
    for name, values in grouped:
        values = values.dropna()
        row = out.loc[name]
        assert row["n"] == len(values) and row["mean"] == pytest.approx(values.mean())
        assert row["std"] == pytest.approx(values.std(ddof=1))
        assert row["cv"] == pytest.approx(values.std() / values.mean())
        assert (row["min"], row["max"]) == (values.min(), values.max())
    by_growth = analysis.stability(table, by="growth", metrics=["trips"]).set_index("growth")
    assert by_growth.loc[0.04, "n"] == 5  # the red replicate recorded nothing


def test_pareto_fronts_by_hand(table: Table) -> None:
    out = analysis.pareto(table, maximize=["trips"], minimize=["length"]).set_index("scenario")
    means = table.frame[table.frame["status"] != "red"].groupby("scenario")[["length", "trips"]].mean()
    for a in means.index:  # front 1: nothing at least as good on both and better on one
        dominated = any(
            means.loc[b, "trips"] >= means.loc[a, "trips"] and means.loc[b, "length"] <= means.loc[a, "length"]
            and (means.loc[b, "trips"] > means.loc[a, "trips"] or means.loc[b, "length"] < means.loc[a, "length"])
            for b in means.index
        )
        assert (out.loc[a, "front"] == 1) == (not dominated), a
    assert list(out["front"]) == sorted(out["front"])


def test_sensitivity_oat_on_a_grid_and_src_otherwise(table: Table) -> None:
    out = analysis.sensitivity(table, metrics=["length"]).set_index("parameter")
    means = table.frame[table.frame["status"] != "red"].groupby("scenario").agg(
        growth=("growth", "first"), cost=("cost", "first"), length=("length", "mean")
    )
    oat = np.mean([part.loc[part["growth"].idxmax(), "length"] - part.loc[part["growth"].idxmin(), "length"]
                   for _, part in means.groupby("cost")])  # fmt: skip
    assert out.loc["growth", "method"] == "oat" and out.loc["growth", "effect"] == pytest.approx(oat)
    assert out.loc["growth", "spearman"] == pytest.approx(means["growth"].rank().corr(means["length"].rank()))
    z = (means - means.mean()) / means.std(ddof=0)
    coef, *_ = np.linalg.lstsq(z[["growth", "cost"]].to_numpy(), z["length"].to_numpy(), rcond=None)
    assert out.loc[["growth", "cost"], "src"].tolist() == pytest.approx(coef.tolist())
    assert out.loc["cost", "rank"] == 1  # -20 per unit of cost over 0.1: the larger effect


def test_sensitivity_without_one_at_a_time_pairs_uses_src(runs: Path) -> None:
    rows = [{"instance": f"s{i}", "status": "green", "a": a, "b": b, "y": 2 * a - b + 0.01 * i}
            for i, (a, b) in enumerate([(1, 5), (2, 3), (3, 4), (4, 1), (5, 2)])]  # fmt: skip
    write_results(pd.DataFrame(rows), runs / "other", ["y"])
    out = analysis.sensitivity(analysis.load(runs, "other")).set_index("parameter")
    assert set(out["method"]) == {"spearman+src"} and out["oat_delta"].isna().all()
    assert out.loc["a", "effect"] == out.loc["a", "src"] and out.loc["a", "rank"] == 1


def test_resources_from_the_ledger(runs: Path) -> None:
    out = analysis.resources(runs, "m")
    assert len(out) == len(GRID) * 3 * 2 and list(out["duration"]) == sorted(out["duration"], reverse=True)
    mem = analysis.resources(runs, "m", sort="memory")
    assert mem.iloc[0]["peak_rss_mb"] == 100.0
    per_flow = analysis.resources(runs, "m", by="flow").set_index("flow")
    assert per_flow.loc["prep", "runs"] == 18 and per_flow.loc["prep", "duration"] == pytest.approx(6 * (1 + 2 + 3))
    assert per_flow.loc["prep", "peak_rss_mb"] == pytest.approx(90.0)
    assert set(out["scenario"]) == {f"g{g}_c{c}" for g, c in GRID} and out["instance"].str.contains("__r").all()
    per_growth = analysis.resources(runs, "m", by="growth").set_index("growth")
    ledger = pd.DataFrame(out).assign(growth=[float(s.split("_")[0][1:]) for s in out["scenario"]])
    assert per_growth["duration"].to_dict() == pytest.approx(ledger.groupby("growth")["duration"].sum().to_dict())
    assert (per_growth["runs"] == 12).all()
    with pytest.raises(AnalysisError, match=r"grouped by 'colour'; known: .*cost, growth"):
        analysis.resources(runs, "m", by="colour")


def test_bad_input_names_the_thing(runs: Path, table: Table, tmp_path: Path) -> None:
    with pytest.raises(AnalysisError, match=r"baseline 'nope' is not a scenario"):
        analysis.compare(table, "nope")
    with pytest.raises(AnalysisError, match=r"no metric column 'lenght'; known: length, trips"):
        analysis.compare(table, "g0.01_c0.1", ["lenght"])
    with pytest.raises(AnalysisError, match="two or more metrics"):
        analysis.pareto(table, maximize=["trips"])
    with pytest.raises(AnalysisError, match="both maximized and minimized"):
        analysis.pareto(table, maximize=["trips"], minimize=["trips"])
    with pytest.raises(AnalysisError, match=r"no results table \(run the conductor"):
        analysis.load(runs, "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(AnalysisError, match="none has one yet: run the conductor first"):
        analysis.load(empty)


@pytest.mark.parametrize("fmt", ["markdown", "csv", "json", "html"])
def test_cli_formats_and_out(runs: Path, tmp_path: Path, fmt: str) -> None:
    args = ["analyze", "compare", "--baseline", "g0.02_c0.1", "--metrics", "length", "--format", fmt, str(runs)]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    if fmt == "markdown":
        assert res.output.splitlines()[0].split("|")[1].strip() == "scenario" and "g0.04_c0.2" in res.output
    elif fmt == "csv":
        assert pd.read_csv(__import__("io").StringIO(res.output)).shape[0] == len(GRID)
    elif fmt == "json":
        assert {r["scenario"] for r in json.loads(res.output)} == {f"g{g}_c{c}" for g, c in GRID}
    else:
        assert res.output.startswith("<!doctype html>") and "<script" not in res.output
    out = tmp_path / f"cmp.{fmt}"
    res = CliRunner().invoke(cli, [*args, "--out", str(out)])
    assert res.exit_code == 0 and res.output.strip() == str(out) and out.stat().st_size > 0


def test_cli_every_analysis_and_its_errors(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["stability"], ["pareto", "--maximize", "trips", "--minimize", "length"], ["sensitivity"],
                 ["resources", "--sort", "memory"]):  # fmt: skip
        res = CliRunner().invoke(cli, ["analyze", *args, str(runs)])
        assert res.exit_code == 0, (args, res.output)
    with pytest.raises(SystemExit) as stop:
        main(["analyze", "compare", "--baseline", "nope", str(runs)])
    assert stop.value.code == 2 and "baseline 'nope' is not a scenario" in capsys.readouterr().err


def test_html_output_escapes_values(runs: Path) -> None:
    rows = [{"instance": "<b>x</b>", "status": "green", "a": 1, "y": 1.0}, {"instance": "z", "status": "green",
            "a": 2, "y": 2.0}]  # fmt: skip
    write_results(pd.DataFrame(rows), runs / "evil", ["y"])
    res = CliRunner().invoke(cli, ["analyze", "stability", "--build", "evil", "--format", "html", str(runs)])
    assert res.exit_code == 0 and "&lt;b&gt;x&lt;/b&gt;" in res.output and "<b>x</b>" not in res.output


def test_pareto_known_fronts_with_ties_and_duplicates(runs: Path) -> None:
    """Maximize x, minimize y: fronts known by hand; equal points share a front, red rows are out."""
    points = {"a": (3, 1), "b": (3, 1), "c": (1, 0), "d": (2, 2), "e": (1, 1), "f": (0, 3), "g": (5, 9)}
    rows = [{"instance": n, "status": "green", "k": i, "x": x, "y": y} for i, (n, (x, y)) in enumerate(points.items())]
    rows.append({"instance": "r", "status": "red", "k": 99, "x": 100, "y": -100})  # would dominate everything
    write_results(pd.DataFrame(rows), runs / "front", ["x", "y"])
    out = analysis.pareto(analysis.load(runs, "front"), maximize=["x"], minimize=["y"])
    # a, b (duplicates), c and g: nothing beats them. d, e: only a/b do. f: only e (front 2) does.
    assert dict(zip(out["scenario"], out["front"], strict=True)) == {
        "a": 1, "b": 1, "c": 1, "g": 1, "d": 2, "e": 2, "f": 3}
    assert list(out["front"]) == sorted(out["front"]) and "r" not in set(out["scenario"])


def test_compare_percent_is_empty_at_a_zero_baseline(runs: Path) -> None:
    rows = [{"instance": n, "status": "green", "k": i, "y": y, "z": z}
            for i, (n, y, z) in enumerate([("base", 0.0, 4.0), ("up", 2.0, 5.0)])]  # fmt: skip
    write_results(pd.DataFrame(rows), runs / "zero", ["y", "z"])
    out = analysis.compare(analysis.load(runs, "zero"), "base").set_index("scenario")
    assert out.loc["up", "y_delta"] == 2.0 and np.isnan(out.loc["up", "y_pct"])
    assert out.loc["up", "z_pct"] == pytest.approx(25.0)


def test_several_builds_and_unknown_columns_are_named(runs: Path, table: Table,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    write_results(pd.DataFrame([{"instance": "s", "status": "green", "y": 1.0}]), runs / "second", ["y"])
    with pytest.raises(AnalysisError, match="several do: m, second|several do: second, m"):
        analysis.load(runs)
    with pytest.raises(AnalysisError, match=r"no column 'colour'; known: .*growth"):
        analysis.stability(table, by="colour")
    with pytest.raises(SystemExit) as stop:
        main(["analyze", "stability", str(runs)])
    assert stop.value.code == 2 and "--build NAME); several do: m, second" in capsys.readouterr().err
